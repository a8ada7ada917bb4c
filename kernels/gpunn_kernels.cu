// gpunn_kernels.cu: the fused kernels of one training step.
//
// Each kernel has a NumPy twin with the same meaning in gpunn/ops.py
// (NumpyKernels); the arithmetic lives in gpunn_math.cuh.  Every kernel is one
// template, instantiated for float and double and exported as extern "C"
// `<op>_f32` / `<op>_f64`, so cupy.RawModule.get_function and dlsym both find
// it by its plain name.
//
// Conventions:
// * matrices are C-contiguous, rows = units, cols = samples;
// * indices are 32-bit ints: the Python side (gpunn/kernel_source.py) checks
//   that every size plus the launched thread count stays below 2^31;
// * grid-stride loops, so any grid size covers any problem size;
// * no shared memory and no __syncthreads: each thread is independent, which is
//   what lets gpunn/host_kernels.py run the kernels one thread at a time on
//   the CPU.

#include "gpunn_math.cuh"

namespace gpunn {

// z[r, c] <- sigmoid(z[r, c] + b[r]), in place.
template <typename T>
__device__ void bias_sigmoid(T* z, const T* b, int rows, int cols) {
    const int n = rows * cols;
    const int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        z[i] = sigmoid(z[i] + b[i / cols]);
    }
}

// g[i] <- g[i] * a[i] (1 - a[i]), in place.
template <typename T>
__device__ void sigmoid_backward(T* g, const T* a, int n) {
    const int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        g[i] = g[i] * sigmoid_grad_from_output(a[i]);
    }
}

// The output layer's delta, fused with the loss and the correct-answer count.
// One thread per sample (column c, grid-striding if the grid is smaller):
// it walks the rows, writes delta, adds up the column's loss in double and
// finds the first most active row; then ONE atomicAdd of its loss to
// *loss_sum and one of its hits to *correct.
template <typename T, bool Quadratic>
__device__ void output_delta(const T* a, const int* labels, T* delta, double* loss_sum,
                             unsigned long long* correct, int rows, int cols) {
    const int stride = gridDim.x * blockDim.x;
    double loss = 0.0;
    unsigned long long hits = 0;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += stride) {
        const int label = labels[c];
        int best = 0;
        T best_a = T(0);
        for (int j = 0; j < rows; ++j) {
            const int i = j * cols + c;
            const T aj = a[i];
            const T t = T(label == j ? 1 : 0);
            if constexpr (Quadratic) {
                delta[i] = quadratic_delta(aj, t);
                loss += quadratic_loss(aj, t);
            } else {
                delta[i] = cross_entropy_delta(aj, t);
                loss += double(cross_entropy_loss(aj, t));
            }
            if (j == 0 || beats_max(aj, best_a)) {
                best = j;
                best_a = aj;
            }
        }
        hits += (best == label) ? 1ULL : 0ULL;
    }
    atomicAdd(loss_sum, loss);
    atomicAdd(correct, hits);
}

// One SGD step over the flat parameter buffer (see gpunn::sgd_step).
// velocity may be NULL when momentum == 0; grad is left unchanged.
template <typename T>
__device__ void sgd_update(T* theta, const T* grad, T* velocity, int n, T lr, T inv_m,
                           T momentum, T weight_decay) {
    const bool use_momentum = momentum != T(0);
    const int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T v = use_momentum ? velocity[i] : T(0);
        theta[i] = sgd_step(theta[i], grad[i], v, lr, inv_m, momentum, weight_decay);
        if (use_momentum) {
            velocity[i] = v;
        }
    }
}

// Gather one minibatch for a CUDA-graph-replayed step, reading the step number
// from device memory: with offset = *step * batch + first,
//   out[r, c] = src[r, order[offset + c]]   and   labels_out[c] = labels_src[order[offset + c]]
// for r < rows, c < cols.  src is (rows, n_total): the training data with the
// samples as columns; order is the epoch's permutation.  The column index into
// src is 64-bit (rows * n_total can pass 2^31); everything else is 32-bit.
template <typename T>
__device__ void gather_batch(const T* src, const int* labels_src, const long long* order,
                             const int* step, T* out, int* labels_out, int rows, int cols,
                             int n_total, int batch, int first) {
    const long long offset = (long long)(*step) * batch + first;
    const int n = rows * cols;
    const int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int r = i / cols;
        const int c = i - r * cols;
        const long long sample = order[offset + c];
        out[i] = src[(long long)r * n_total + sample];
        if (r == 0) {
            labels_out[c] = labels_src[sample];
        }
    }
}

}  // namespace gpunn

// The step counter of a graph-replayed epoch: *step += 1, by one thread.
extern "C" __global__ void advance_step(int* step) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        *step += 1;
    }
}

// ---- exported entry points: <op>_f32 and <op>_f64 ---------------------------

#define GPUNN_EXPORT_KERNELS(T, SUFFIX)                                                       \
    extern "C" __global__ void bias_sigmoid##SUFFIX(T* z, const T* b, int rows, int cols) {   \
        gpunn::bias_sigmoid<T>(z, b, rows, cols);                                             \
    }                                                                                         \
    extern "C" __global__ void sigmoid_backward##SUFFIX(T* g, const T* a, int n) {            \
        gpunn::sigmoid_backward<T>(g, a, n);                                                  \
    }                                                                                         \
    extern "C" __global__ void output_delta_quadratic##SUFFIX(                                \
        const T* a, const int* labels, T* delta, double* loss_sum,                            \
        unsigned long long* correct, int rows, int cols) {                                    \
        gpunn::output_delta<T, true>(a, labels, delta, loss_sum, correct, rows, cols);        \
    }                                                                                         \
    extern "C" __global__ void output_delta_cross_entropy##SUFFIX(                            \
        const T* a, const int* labels, T* delta, double* loss_sum,                            \
        unsigned long long* correct, int rows, int cols) {                                    \
        gpunn::output_delta<T, false>(a, labels, delta, loss_sum, correct, rows, cols);       \
    }                                                                                         \
    extern "C" __global__ void sgd_update##SUFFIX(T* theta, const T* grad, T* velocity,       \
                                                  int n, T lr, T inv_m, T momentum,           \
                                                  T weight_decay) {                           \
        gpunn::sgd_update<T>(theta, grad, velocity, n, lr, inv_m, momentum, weight_decay);    \
    }                                                                                         \
    extern "C" __global__ void gather_batch##SUFFIX(                                          \
        const T* src, const int* labels_src, const long long* order, const int* step,         \
        T* out, int* labels_out, int rows, int cols, int n_total, int batch, int first) {     \
        gpunn::gather_batch<T>(src, labels_src, order, step, out, labels_out, rows, cols,     \
                               n_total, batch, first);                                        \
    }

GPUNN_EXPORT_KERNELS(float, _f32)
GPUNN_EXPORT_KERNELS(double, _f64)
