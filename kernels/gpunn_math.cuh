// gpunn_math.cuh: the elementwise arithmetic of gpunn's fused kernels.
//
// Every function here is `__host__ __device__`, so the same text is compiled by
// NVRTC for the GPU and by the host C++ compiler for the CPU emulation
// (gpunn/host_kernels.py), where it is checked against the NumPy twins in
// gpunn/ops.py.  Each formula performs the same IEEE operations in the same
// order as its twin, so results differ only where a library function (tanh,
// log) differs by an ulp or two, where the GPU contracts a*b+c into an FMA,
// and in the SGD step without momentum or decay, which the twin rounds as
// grad * (lr * inv_m) and sgd_step as (grad * inv_m) * lr.
//
// FMA contraction: NVRTC compiles with --fmad=true unless told otherwise, and
// neither gpunn (kernel_source.RAWMODULE_OPTIONS) nor CuPy (-ftz=true) turns it
// off, so a*b + c may be rounded once instead of twice.  The arithmetic whose
// twin test is exact (the activations' derivatives, the sigmoid outputs'
// deltas: the `exact` cases of tests/kernel_cases.py) is therefore written with
// the explicitly rounded operations mul_rn / add_rn / sub_rn below: CUDA's
// __fmul_rn, __fadd_rn, __fsub_rn, __dmul_rn, ... , which compile to PTX
// mul.rn / add.rn / sub.rn and are never merged into an FMA (CUDA Math API,
// "Single/Double Precision Intrinsics"; PTX ISA: an instruction with an
// explicit rounding modifier is not contracted).  On the host, the shim
// (host_shim.cuh) defines them as the plain operation, compiled with
// -ffp-contract=off.  tests/test_kernels_compile.py reads the PTX and fails if
// an exactly tested kernel holds an fma, or an unrounded mul feeding an
// unrounded add/sub.  The tiled products (gpunn_tiles.cuh) keep their FMAs
// for speed; their tests are tolerance-based.
//
// Never compile this with fast-math options: the sigmoid relies on tanh
// saturating exactly to +-1, and the losses on IEEE log.

#ifndef GPUNN_MATH_CUH
#define GPUNN_MATH_CUH

#if !defined(__CUDACC_RTC__)
#include <math.h>
#endif

namespace gpunn {

// Library functions, overloaded so that float stays in float (tanhf, logf) and
// double in double: a template must never silently promote float to double.
__host__ __device__ __forceinline__ float tanh_(float x) { return tanhf(x); }
__host__ __device__ __forceinline__ double tanh_(double x) { return tanh(x); }
__host__ __device__ __forceinline__ float log_(float x) { return logf(x); }
__host__ __device__ __forceinline__ double log_(double x) { return log(x); }
__host__ __device__ __forceinline__ float abs_(float x) { return fabsf(x); }
__host__ __device__ __forceinline__ double abs_(double x) { return fabs(x); }
__host__ __device__ __forceinline__ float exp_(float x) { return expf(x); }
__host__ __device__ __forceinline__ double exp_(double x) { return exp(x); }
__host__ __device__ __forceinline__ float sqrt_(float x) { return sqrtf(x); }
__host__ __device__ __forceinline__ double sqrt_(double x) { return sqrt(x); }

// Explicitly rounded arithmetic, never contracted into an FMA (see the top of this file).
__host__ __device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__host__ __device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__host__ __device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__host__ __device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__host__ __device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__host__ __device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }

// Floor for 1 - |a - t| inside the cross-entropy's log (ops.CROSS_ENTROPY_FLOOR).
#define GPUNN_CROSS_ENTROPY_FLOOR 1e-12

// sigma(z) = tanh(z/2)/2 + 1/2: no exponential that could overflow, so any
// finite z gives a value in [0, 1], exactly 0 or 1 once tanh saturates.
template <typename T>
__host__ __device__ __forceinline__ T sigmoid(T z) {
    return T(0.5) * tanh_(T(0.5) * z) + T(0.5);
}

// sigma'(z) from the saved output a = sigma(z), computed as a (1 - a) like
// the twin's `(1 - a) * a` (same rounding: multiplication commutes exactly),
// with rounded operations (exactly tested).
template <typename T>
__host__ __device__ __forceinline__ T sigmoid_grad_from_output(T a) {
    return mul_rn(a, sub_rn(T(1), a));
}

// ---- activations ------------------------------------------------------------
// Each activation is a functor with
//   apply(z):            the unit's output a = f(z);
//   grad_from_output(a): f'(z) computed from the saved output a alone, so the
//                        backward pass never needs the weighted sums z.
// The kernels are templates over these (bias_act, act_backward in
// gpunn_kernels.cu): one kernel text, one instantiation per activation.
// Each formula performs the IEEE operations of its NumPy twin (gpunn/ops.py)
// in the same order.

struct Sigmoid {
    template <typename T>
    __host__ __device__ __forceinline__ static T apply(T z) { return sigmoid(z); }
    template <typename T>
    __host__ __device__ __forceinline__ static T grad_from_output(T a) { return sigmoid_grad_from_output(a); }
};

// tanh'(z) = 1 - tanh(z)^2 = 1 - a^2, the twin's `1 - a * a` rounded twice: written
// as T(1) - a * a, NVRTC's PTX held mul.ftz.f32 feeding sub.ftz.f32, which ptxas fuses
// into one FFMA (about 2/3 of float32 results then differ from the twin by an ulp).
struct Tanh {
    template <typename T>
    __host__ __device__ __forceinline__ static T apply(T z) { return tanh_(z); }
    template <typename T>
    __host__ __device__ __forceinline__ static T grad_from_output(T a) { return sub_rn(T(1), mul_rn(a, a)); }
};

// relu(z) = max(z, 0), NaN kept (like np.maximum); relu'(z) = 1 where a > 0, else 0.
struct Relu {
    template <typename T>
    __host__ __device__ __forceinline__ static T apply(T z) { return z < T(0) ? T(0) : z; }
    template <typename T>
    __host__ __device__ __forceinline__ static T grad_from_output(T a) { return a > T(0) ? T(1) : T(0); }
};

// The output layer of a softmax network keeps its weighted sums (the logits):
// the softmax itself is fused into the output-delta kernel, per sample.
struct Identity {
    template <typename T>
    __host__ __device__ __forceinline__ static T apply(T z) { return z; }
    template <typename T>
    __host__ __device__ __forceinline__ static T grad_from_output(T) { return T(1); }
};

// Quadratic loss of one output unit: 1/2 (a - t)^2, accumulated in double.
template <typename T>
__host__ __device__ __forceinline__ double quadratic_loss(T a, T t) {
    const double d = double(a - t);
    return 0.5 * d * d;
}

// dE/dz of one output unit for the quadratic loss: (a - t) * [a (1 - a)],
// grouped as the twin groups it and rounded operation by operation, so the
// float result is bit-identical.
template <typename T>
__host__ __device__ __forceinline__ T quadratic_delta(T a, T t) {
    return mul_rn(sub_rn(a, t), sigmoid_grad_from_output(a));
}

// Cross-entropy of one output unit for a one-hot target t:
// -[t log a + (1 - t) log(1 - a)] = -log(1 - |a - t|), the argument floored at
// GPUNN_CROSS_ENTROPY_FLOOR and the log taken in T, as in the twin.
template <typename T>
__host__ __device__ __forceinline__ T cross_entropy_loss(T a, T t) {
    const T floor_ = T(GPUNN_CROSS_ENTROPY_FLOOR);
    T p = T(1) - abs_(a - t);
    p = p < floor_ ? floor_ : p;  // keeps NaN, like np.maximum
    return -log_(p);
}

// dE/dz of one output unit for cross-entropy on a sigmoid output: a - t.
template <typename T>
__host__ __device__ __forceinline__ T cross_entropy_delta(T a, T t) {
    return sub_rn(a, t);
}

// Whether x replaces the running maximum m of an argmax scan, with np.argmax's
// rules: the first maximum wins ties (strict >), and the first NaN wins outright.
template <typename T>
__host__ __device__ __forceinline__ bool beats_max(T x, T m) {
    return x > m || (x != x && m == m);
}

// Softmax cross-entropy of one sample, fused: its K logits z (one column of the
// output layer, stride `stride` apart in memory) become the probabilities
// p = softmax(z) in place, delta = p - t is written, and the sample's loss
// -log p_label = log(sum_j exp(z_j - max)) - (z_label - max) is returned,
// computed from the max-shifted logits so that it is finite for any finite z.
// `best` receives the first most probable class (np.argmax's rules).
// The twin (ops.NumpyKernels.output_delta) performs the same operations in
// the same order: shift, exp, a sequential sum over the classes, divide.
template <typename T>
__host__ __device__ inline T softmax_cross_entropy(T* z, T* delta, int rows, long long stride, int label,
                                                   int& best) {
    T z_max = z[0];
    for (int j = 1; j < rows; ++j) {
        const T zj = z[j * stride];
        if (beats_max(zj, z_max)) z_max = zj;
    }
    const T shifted_label = z[(long long)label * stride] - z_max;
    T sum = T(0);
    for (int j = 0; j < rows; ++j) {
        const T e = exp_(z[j * stride] - z_max);
        z[j * stride] = e;
        sum += e;
    }
    best = 0;
    T best_p = T(0);
    for (int j = 0; j < rows; ++j) {
        const long long i = j * stride;
        const T p = z[i] / sum;
        z[i] = p;
        delta[i] = p - T(label == j ? 1 : 0);
        if (j == 0 || beats_max(p, best_p)) {
            best = j;
            best_p = p;
        }
    }
    return log_(sum) - shifted_label;
}

// One SGD step of one parameter, returning the new theta (torch.optim.SGD's
// arithmetic, dampening 0):
//   g = grad * inv_m + weight_decay * theta   (decay term skipped when 0, as in
//       the twin, so a non-finite theta does not turn 0 * theta into NaN)
//   with momentum: v = momentum * v + g; g = v, or with Nesterov g = g + momentum * v
//   step = lr * g, times the parameter's own rate multiplier when there is one
//   (lr_scale, the per-layer step sizes); theta - step
// v is neither read nor written without momentum.
template <typename T>
__host__ __device__ __forceinline__ T sgd_step(T theta, T grad, T& v, T lr, T inv_m, T momentum,
                                               T weight_decay, bool nesterov, const T* lr_scale) {
    T g = grad * inv_m;
    if (weight_decay != T(0)) {
        g += weight_decay * theta;
    }
    if (momentum != T(0)) {
        v = momentum * v + g;
        g = nesterov ? g + momentum * v : v;
    }
    T step = lr * g;
    if (lr_scale != nullptr) {
        step *= *lr_scale;
    }
    return theta - step;
}

// The scalars of one Adam step that depend on the step number t (1, 2, ...),
// computed in double exactly as torch.optim.Adam computes them in Python:
// step_size = lr / (1 - beta1^t), bias_correction2_sqrt = sqrt(1 - beta2^t).
struct AdamScalars {
    double step_size;
    double bias_correction2_sqrt;
};

__host__ __device__ inline AdamScalars adam_scalars(double lr, double beta1, double beta2, int t) {
    AdamScalars s;
    s.step_size = lr / (1.0 - pow(beta1, double(t)));
    s.bias_correction2_sqrt = sqrt(1.0 - pow(beta2, double(t)));
    return s;
}

// One Adam / AdamW step of one parameter (torch.optim.Adam/AdamW,
// _single_tensor_adam, amsgrad off), returning the new theta:
//   g = grad * inv_m (+ l2_decay * theta: Adam's weight decay, an L2 term)
//   theta = theta * decoupled_factor      (AdamW: 1 - lr * weight_decay; else 1, skipped)
//   m = m + (1 - beta1) (g - m)            (torch's lerp_)
//   v = v beta2 + (1 - beta2) g^2
//   theta - step_size * m / (sqrt(v) / bias_correction2_sqrt + eps)
template <typename T>
__host__ __device__ __forceinline__ T adam_step(T theta, T grad, T& m, T& v, T inv_m, T one_minus_beta1,
                                                T beta2, T one_minus_beta2, T eps, T step_size,
                                                T bias_correction2_sqrt, T l2_decay, T decoupled_factor) {
    T g = grad * inv_m;
    if (l2_decay != T(0)) {
        g += l2_decay * theta;
    }
    if (decoupled_factor != T(1)) {
        theta *= decoupled_factor;
    }
    m = m + one_minus_beta1 * (g - m);
    v = v * beta2 + one_minus_beta2 * g * g;
    const T denom = sqrt_(v) / bias_correction2_sqrt + eps;
    return theta - step_size * (m / denom);
}

}  // namespace gpunn

#endif  // GPUNN_MATH_CUH
