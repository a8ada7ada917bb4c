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
// * the elementwise kernels use grid-stride loops, so any grid size covers any
//   problem size, and no shared memory: each thread is independent;
// * the dense-layer kernels and the output delta work block by block, with
//   shared memory and barriers (gpunn_tiles.cuh); gpunn/host_kernels.py runs
//   them on the CPU with a block-level executor (host_shim.cuh);
// * no floating-point atomics: every sum is added up in a fixed order, so a run
//   repeats bit for bit on the same device.

#include "gpunn_math.cuh"
#include "gpunn_tiles.cuh"

namespace gpunn {

// z[r, c] <- act(z[r, c] + b[r]), in place: the layer's weighted sums become its outputs.
template <typename T, typename Act>
__device__ void bias_act(T* z, const T* b, int rows, int cols) {
    const int n = rows * cols;
    const int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        z[i] = Act::apply(z[i] + b[i / cols]);
    }
}

// g[i] <- g[i] * act'(z[i]), with act' taken from the saved output a[i], in place:
// the chain rule through one layer.  Exactly tested against the twin, so the
// product is rounded explicitly (mul_rn: never contracted, see gpunn_math.cuh).
template <typename T, typename Act>
__device__ void act_backward(T* g, const T* a, int n) {
    const int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        g[i] = mul_rn(g[i], Act::grad_from_output(a[i]));
    }
}

// One sample's (column c's) deltas and loss times the sample's weight, when weights is
// not NULL (sample_weight); explicitly rounded, as the twin multiplies.  Shared by the
// output deltas of class labels and of float targets.
template <typename T>
__device__ void weigh_sample(const T* weights, T* delta, double& column, int c, int rows, int cols) {
    if (weights == nullptr) {
        return;
    }
    const T w = weights[c];
    for (int j = 0; j < rows; ++j) {
        delta[j * cols + c] = mul_rn(delta[j * cols + c], w);
    }
    column = mul_rn(column, double(w));
}

// The output layer's delta, fused with the loss and the correct-answer count.
// One thread per sample (column c, grid-striding if the grid is smaller):
// it walks the rows, writes delta, adds up the column's loss in double and
// finds the first most active row.  The threads' losses and hits are then
// summed over the launch in a fixed order (gpunn::sum_over_blocks, with the
// scratch block_loss / block_hits / arrivals) and added to *loss_sum and
// *correct, so the totals are the same bits whatever order the blocks run in.
// Objective: 0 quadratic, 1 cross-entropy (both on sigmoid outputs),
// 2 softmax cross-entropy (a holds the logits and receives the probabilities).
// weights: NULL, or one weight per sample (sample_weight): the column's delta
// is multiplied by it (rounded, never contracted) and so is its loss; the
// correct count is not weighted.
template <typename T, int Objective>
__device__ void output_delta(T* a, const int* labels, const T* weights, T* delta, double* loss_sum,
                             unsigned long long* correct, double* block_loss,
                             unsigned long long* block_hits, unsigned int* arrivals, int rows,
                             int cols) {
    const int stride = gridDim.x * blockDim.x;
    double loss = 0.0;
    unsigned long long hits = 0;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += stride) {
        const int label = labels[c];
        int best = 0;
        double column = 0.0;
        if constexpr (Objective == 2) {
            column = double(softmax_cross_entropy(a + c, delta + c, rows, cols, label, best));
        } else {
            T best_a = T(0);
            for (int j = 0; j < rows; ++j) {
                const int i = j * cols + c;
                const T aj = a[i];
                const T t = T(label == j ? 1 : 0);
                if constexpr (Objective == 0) {
                    delta[i] = quadratic_delta(aj, t);
                    column += quadratic_loss(aj, t);
                } else {
                    delta[i] = cross_entropy_delta(aj, t);
                    column += double(cross_entropy_loss(aj, t));
                }
                if (j == 0 || beats_max(aj, best_a)) {
                    best = j;
                    best_a = aj;
                }
            }
        }
        weigh_sample(weights, delta, column, c, rows, cols);
        loss += column;
        hits += (best == label) ? 1ULL : 0ULL;
    }
    sum_over_blocks(loss, hits, loss_sum, correct, block_loss, block_hits, arrivals);
}

// The output delta of a regression network: identity outputs and the squared
// error against float targets t (rows x cols, like a; rows = the targets per
// sample).  delta = a - t, times the sample's weight when weights is not NULL;
// the loss 1/2 (a - t)^2 (times the weight) is added up per column in double and
// summed over the launch like output_delta's; *correct gets 0 added (regression
// has no correct answers).  Every operation is explicitly rounded, so the delta
// is the twin's (ops.NumpyKernels.output_delta, objective squared_error) bit for
// bit; the loss agrees to the rounding of a sum.
//
// Objective 1 (multilabel_cross_entropy) is the same walk for sigmoid outputs and
// 0/1 targets of several labels at once: delta = a - t, the loss the binary
// cross-entropy of every output (cross_entropy_loss), and a sample counts as
// correct when every output is on the right side of 0.5 (subset accuracy).
template <typename T, int Objective>
__device__ void float_target_delta(const T* a, const T* targets, const T* weights, T* delta, double* loss_sum,
                                   unsigned long long* correct, double* block_loss,
                                   unsigned long long* block_hits, unsigned int* arrivals, int rows, int cols) {
    const int stride = gridDim.x * blockDim.x;
    double loss = 0.0;
    unsigned long long hits = 0;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += stride) {
        double column = 0.0;
        bool all_right = true;
        for (int j = 0; j < rows; ++j) {
            const int i = j * cols + c;
            const T d = sub_rn(a[i], targets[i]);
            delta[i] = d;
            if constexpr (Objective == 0) {
                column = add_rn(column, mul_rn(0.5, mul_rn(double(d), double(d))));
            } else {
                column += double(cross_entropy_loss(a[i], targets[i]));
                all_right = all_right && ((a[i] > T(0.5)) == (targets[i] > T(0.5)));
            }
        }
        if constexpr (Objective == 1) {
            hits += all_right ? 1ULL : 0ULL;
        }
        weigh_sample(weights, delta, column, c, rows, cols);
        loss += column;
    }
    sum_over_blocks(loss, hits, loss_sum, correct, block_loss, block_hits, arrivals);
}

// ---- dense layers: the three products of a training step, each fused with its epilogue ----
// A layer with n_in inputs and n_out units, over a batch of m samples; its
// parameters are the block [W; b], (n_in + 1) x n_out, the bias as its last row;
// its input is [A_prev; 1], (n_in + 1) x m, the activations with a row of ones.

// Forward: z[o, c] = act(sum over i of Wb[i, o] * a_in[i, c]), i < n_in + 1: the
// weighted sum, the bias (through the row of ones) and the activation in one
// kernel; the weighted sums are never written to memory.  z is n_out x m.
template <typename T, typename Act>
struct ActivateStore {
    T* z;
    int ld;
    __device__ __forceinline__ void operator()(int r, int c, T sum) const { z[r * ld + c] = Act::apply(sum); }
};

template <typename T, typename Act>
__device__ void dense_forward(const T* wb, const T* a_in, T* z, int n_in_plus_1, int n_out, int m) {
    const Operand<T, true> weights_t{wb, n_out, n_out, n_in_plus_1};  // op(A) = Wb^T
    const Operand<T, true> inputs{a_in, m, m, n_in_plus_1};           // op(B) = [A_prev; 1]
    tiled_product(weights_t, inputs, ActivateStore<T, Act>{z, m});
}

// Backward, one layer down: delta_below[i, c] = (sum over o of W[i, o] * delta[o, c])
// * act'(a_below[i, c]), with act' from the layer below's saved outputs.  W is the
// n_in x n_out weights (the block without its bias row); delta is n_out x m;
// a_below and delta_below are n_in x m.
template <typename T, typename Act>
struct ChainRuleStore {
    T* delta_below;
    const T* a_below;
    int ld;
    __device__ __forceinline__ void operator()(int r, int c, T sum) const {
        const int i = r * ld + c;
        delta_below[i] = sum * Act::grad_from_output(a_below[i]);
    }
};

template <typename T, typename Act>
__device__ void dense_backward(const T* w, const T* delta, const T* a_below, T* delta_below, int n_in,
                               int n_out, int m) {
    const Operand<T, false> weights{w, n_out, n_in, n_out};  // op(A) = W
    const Operand<T, true> deltas{delta, m, m, n_out};       // op(B) = delta
    tiled_product(weights, deltas, ChainRuleStore<T, Act>{delta_below, a_below, m});
}

// Weight gradient: grad[i, o] = sum over c of a_in[i, c] * delta[o, c], i < n_in + 1:
// [A_prev; 1] delta^T, the bias gradient as its last row (the ones times delta).
// grad is the layer's (n_in + 1) x n_out block of the flat gradient buffer.
template <typename T>
struct Store {
    T* out;
    int ld;
    __device__ __forceinline__ void operator()(int r, int c, T sum) const { out[r * ld + c] = sum; }
};

template <typename T>
__device__ void dense_weight_grad(const T* a_in, const T* delta, T* grad, int n_in_plus_1, int n_out, int m) {
    const Operand<T, false> inputs{a_in, m, n_in_plus_1, m};  // op(A) = [A_prev; 1]
    const Operand<T, false> deltas_t{delta, m, n_out, m};     // op(B) = delta^T
    tiled_product(inputs, deltas_t, Store<T>{grad, n_out});
}

// Softmax over each column of z (logits -> probabilities), in place: the
// output layer of a softmax network at prediction time.  One thread per column.
template <typename T>
__device__ void softmax_columns(T* z, int rows, int cols) {
    const int stride = gridDim.x * blockDim.x;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += stride) {
        T z_max = z[c];
        for (int j = 1; j < rows; ++j) {
            if (beats_max(z[j * cols + c], z_max)) z_max = z[j * cols + c];
        }
        T sum = T(0);
        for (int j = 0; j < rows; ++j) {
            const T e = exp_(z[j * cols + c] - z_max);
            z[j * cols + c] = e;
            sum += e;
        }
        for (int j = 0; j < rows; ++j) {
            z[j * cols + c] = z[j * cols + c] / sum;
        }
    }
}

// One SGD step over the flat parameter buffer (see gpunn::sgd_step).
// velocity may be NULL when momentum == 0, lr_scale NULL when every parameter
// takes the same step size; grad is left unchanged.
template <typename T>
__device__ void sgd_update(T* theta, const T* grad, T* velocity, const T* lr_scale, int n, T lr, T inv_m,
                           T momentum, T weight_decay, int nesterov) {
    const bool use_momentum = momentum != T(0);
    const int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T v = use_momentum ? velocity[i] : T(0);
        theta[i] = sgd_step(theta[i], grad[i], v, lr, inv_m, momentum, weight_decay, nesterov != 0,
                            lr_scale == nullptr ? nullptr : lr_scale + i);
        if (use_momentum) {
            velocity[i] = v;
        }
    }
}

// One Adam/AdamW step over the flat parameter buffer (see gpunn::adam_step).
// The step number t is read from device memory (*step, already counting this
// step), so a CUDA graph that replays this launch applies the right bias
// corrections at every replay.  Hyper-parameters come in double, as PyTorch
// holds them; each thread works out the same t-dependent scalars.
template <typename T>
__device__ void adam_update(T* theta, const T* grad, T* m, T* v, const int* step, int n, T inv_m,
                            double lr, double beta1, double beta2, double eps, double weight_decay,
                            int decoupled) {
    const AdamScalars s = adam_scalars(lr, beta1, beta2, *step);
    const T l2_decay = decoupled ? T(0) : T(weight_decay);
    const T decoupled_factor = decoupled ? T(1.0 - lr * weight_decay) : T(1);
    const int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        T mi = m[i], vi = v[i];
        theta[i] = adam_step(theta[i], grad[i], mi, vi, inv_m, T(1.0 - beta1), T(beta2), T(1.0 - beta2),
                             T(eps), T(s.step_size), T(s.bias_correction2_sqrt), l2_decay, decoupled_factor);
        m[i] = mi;
        v[i] = vi;
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


// gather_batch without labels: out[r, c] = src[r, order[*step * batch + first + c]],
// for the float rows a step needs beside its inputs (a regression network's
// targets, the samples' weights).
template <typename T>
__device__ void gather_columns(const T* src, const long long* order, const int* step, T* out, int rows,
                               int cols, int n_total, int batch, int first) {
    const long long offset = (long long)(*step) * batch + first;
    const int n = rows * cols;
    const int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int r = i / cols;
        const int c = i - r * cols;
        out[i] = src[(long long)r * n_total + order[offset + c]];
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

// One activation's pair of kernels: bias_<name> (forward) and <name>_backward.
// One activation's kernels: bias_<name> and dense_forward_<name> (forward),
// <name>_backward and dense_backward_<name> (backward).
#define GPUNN_EXPORT_FORWARD(T, SUFFIX, NAME, ACT)                                             \
    extern "C" __global__ void bias_##NAME##SUFFIX(T* z, const T* b, int rows, int cols) {      \
        gpunn::bias_act<T, gpunn::ACT>(z, b, rows, cols);                                     \
    }                                                                                         \
    extern "C" __global__ void dense_forward_##NAME##SUFFIX(                                   \
        const T* wb, const T* a_in, T* z, int n_in_plus_1, int n_out, int m) {                \
        gpunn::dense_forward<T, gpunn::ACT>(wb, a_in, z, n_in_plus_1, n_out, m);              \
    }

#define GPUNN_EXPORT_ACTIVATION(T, SUFFIX, NAME, ACT)                                          \
    GPUNN_EXPORT_FORWARD(T, SUFFIX, NAME, ACT)                                                \
    extern "C" __global__ void NAME##_backward##SUFFIX(T* g, const T* a, int n) {               \
        gpunn::act_backward<T, gpunn::ACT>(g, a, n);                                          \
    }                                                                                         \
    extern "C" __global__ void dense_backward_##NAME##SUFFIX(                                  \
        const T* w, const T* delta, const T* a_below, T* delta_below, int n_in, int n_out,    \
        int m) {                                                                              \
        gpunn::dense_backward<T, gpunn::ACT>(w, delta, a_below, delta_below, n_in, n_out, m); \
    }

#define GPUNN_EXPORT_OUTPUT_DELTA(T, SUFFIX, NAME, OBJECTIVE)                                  \
    extern "C" __global__ void output_delta_##NAME##SUFFIX(                                    \
        T* a, const int* labels, const T* weights, T* delta, double* loss_sum,                \
        unsigned long long* correct, double* block_loss, unsigned long long* block_hits,      \
        unsigned int* arrivals, int rows, int cols) {                                         \
        gpunn::output_delta<T, OBJECTIVE>(a, labels, weights, delta, loss_sum, correct,       \
                                          block_loss, block_hits, arrivals, rows, cols);      \
    }

#define GPUNN_EXPORT_KERNELS(T, SUFFIX)                                                       \
    GPUNN_EXPORT_ACTIVATION(T, SUFFIX, sigmoid, Sigmoid)                                      \
    GPUNN_EXPORT_ACTIVATION(T, SUFFIX, tanh, Tanh)                                            \
    GPUNN_EXPORT_ACTIVATION(T, SUFFIX, relu, Relu)                                            \
    GPUNN_EXPORT_ACTIVATION(T, SUFFIX, identity, Identity)                                    \
    extern "C" __global__ void dense_weight_grad##SUFFIX(                                      \
        const T* a_in, const T* delta, T* grad, int n_in_plus_1, int n_out, int m) {          \
        gpunn::dense_weight_grad<T>(a_in, delta, grad, n_in_plus_1, n_out, m);                \
    }                                                                                         \
    GPUNN_EXPORT_OUTPUT_DELTA(T, SUFFIX, quadratic, 0)                                        \
    GPUNN_EXPORT_OUTPUT_DELTA(T, SUFFIX, cross_entropy, 1)                                    \
    GPUNN_EXPORT_OUTPUT_DELTA(T, SUFFIX, softmax_cross_entropy, 2)                            \
    extern "C" __global__ void output_delta_squared_error##SUFFIX(                             \
        const T* a, const T* targets, const T* weights, T* delta, double* loss_sum,           \
        unsigned long long* correct, double* block_loss, unsigned long long* block_hits,      \
        unsigned int* arrivals, int rows, int cols) {                                         \
        gpunn::float_target_delta<T, 0>(a, targets, weights, delta, loss_sum, correct,        \
                                        block_loss, block_hits, arrivals, rows, cols);        \
    }                                                                                         \
    extern "C" __global__ void output_delta_multilabel_cross_entropy##SUFFIX(                  \
        const T* a, const T* targets, const T* weights, T* delta, double* loss_sum,           \
        unsigned long long* correct, double* block_loss, unsigned long long* block_hits,      \
        unsigned int* arrivals, int rows, int cols) {                                         \
        gpunn::float_target_delta<T, 1>(a, targets, weights, delta, loss_sum, correct,        \
                                        block_loss, block_hits, arrivals, rows, cols);        \
    }                                                                                         \
    extern "C" __global__ void softmax_columns##SUFFIX(T* z, int rows, int cols) {            \
        gpunn::softmax_columns<T>(z, rows, cols);                                             \
    }                                                                                         \
    extern "C" __global__ void sgd_update##SUFFIX(T* theta, const T* grad, T* velocity,       \
                                                  const T* lr_scale, int n, T lr, T inv_m,    \
                                                  T momentum, T weight_decay, int nesterov) { \
        gpunn::sgd_update<T>(theta, grad, velocity, lr_scale, n, lr, inv_m, momentum,         \
                             weight_decay, nesterov);                                         \
    }                                                                                         \
    extern "C" __global__ void adam_update##SUFFIX(                                           \
        T* theta, const T* grad, T* m, T* v, const int* step, int n, T inv_m, double lr,      \
        double beta1, double beta2, double eps, double weight_decay, int decoupled) {         \
        gpunn::adam_update<T>(theta, grad, m, v, step, n, inv_m, lr, beta1, beta2, eps,       \
                              weight_decay, decoupled);                                       \
    }                                                                                         \
    extern "C" __global__ void gather_batch##SUFFIX(                                          \
        const T* src, const int* labels_src, const long long* order, const int* step,         \
        T* out, int* labels_out, int rows, int cols, int n_total, int batch, int first) {     \
        gpunn::gather_batch<T>(src, labels_src, order, step, out, labels_out, rows, cols,     \
                               n_total, batch, first);                                        \
    }                                                                                         \
    extern "C" __global__ void gather_columns##SUFFIX(                                        \
        const T* src, const long long* order, const int* step, T* out, int rows, int cols,    \
        int n_total, int batch, int first) {                                                  \
        gpunn::gather_columns<T>(src, order, step, out, rows, cols, n_total, batch, first);   \
    }

GPUNN_EXPORT_KERNELS(float, _f32)
GPUNN_EXPORT_KERNELS(double, _f64)
