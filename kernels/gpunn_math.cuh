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

// Floor for 1 - |a - t| inside the cross-entropy's log (ops.CROSS_ENTROPY_FLOOR).
#define GPUNN_CROSS_ENTROPY_FLOOR 1e-12

// sigma(z) = tanh(z/2)/2 + 1/2: no exponential that could overflow, so any
// finite z gives a value in [0, 1], exactly 0 or 1 once tanh saturates.
template <typename T>
__host__ __device__ __forceinline__ T sigmoid(T z) {
    return T(0.5) * tanh_(T(0.5) * z) + T(0.5);
}

// sigma'(z) from the saved output a = sigma(z), computed as a (1 - a) like
// the twin's `(1 - a) * a` (same rounding: multiplication commutes exactly).
template <typename T>
__host__ __device__ __forceinline__ T sigmoid_grad_from_output(T a) {
    return a * (T(1) - a);
}

// Quadratic loss of one output unit: 1/2 (a - t)^2, accumulated in double.
template <typename T>
__host__ __device__ __forceinline__ double quadratic_loss(T a, T t) {
    const double d = double(a - t);
    return 0.5 * d * d;
}

// dE/dz of one output unit for the quadratic loss: (a - t) * [a (1 - a)],
// grouped as the twin groups it, so the float result is bit-identical.
template <typename T>
__host__ __device__ __forceinline__ T quadratic_delta(T a, T t) {
    return (a - t) * sigmoid_grad_from_output(a);
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
    return a - t;
}

// Whether x replaces the running maximum m of an argmax scan, with np.argmax's
// rules: the first maximum wins ties (strict >), and the first NaN wins outright.
template <typename T>
__host__ __device__ __forceinline__ bool beats_max(T x, T m) {
    return x > m || (x != x && m == m);
}

// One SGD step of one parameter, returning the new theta:
//   g = grad * inv_m + weight_decay * theta   (decay term skipped when 0, as in
//       the twin, so a non-finite theta does not turn 0 * theta into NaN)
//   with momentum: v = momentum * v + g; theta - lr * v
//   without:       theta - lr * g             (v is neither read nor written)
template <typename T>
__host__ __device__ __forceinline__ T sgd_step(T theta, T grad, T& v, T lr, T inv_m,
                                               T momentum, T weight_decay) {
    T g = grad * inv_m;
    if (weight_decay != T(0)) {
        g += weight_decay * theta;
    }
    if (momentum != T(0)) {
        v = momentum * v + g;
        g = v;
    }
    return theta - lr * g;
}

}  // namespace gpunn

#endif  // GPUNN_MATH_CUH
