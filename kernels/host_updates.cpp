// host_updates.cpp: the optimizer updates as plain loops for the CPU, one pass over memory.
//
// The NumPy twins (gpunn/compute/ops.py, NumpyKernels.sgd_update / adam_update)
// make about ten passes over the flat parameter buffer and the optimizer's state,
// one ufunc at a time.  These loops read every parameter, gradient and moment once
// and write each once, with the per-element arithmetic of the CUDA kernels
// (gpunn::sgd_step and gpunn::adam_step in gpunn_math.cuh, included as they are):
// the same IEEE operations in the same order as the twins, so the results agree
// with them to the rounding of the scalars worked out in double (sqrt, division
// and the rest are IEEE operations, exactly rounded on both sides).
//
// gpunn/compute/cpu_updates.py builds this file with the host C++ compiler
// (-O3, -ffp-contract=off so that no a*b + c becomes an FMA the twin does not
// make, -fno-math-errno so that sqrtf vectorises; never fast-math) and calls the
// loops through ctypes.  Each call updates elements 0..n-1 of the flat buffers.
//
// The loops are bound by the throughput of division and sqrt, not by memory, so
// the vector width matters (Adam, 203,530 float32 parameters, AMD EPYC: 140 us
// with SSE2, 72 us with AVX2, 42 us with AVX-512).  The Python side builds this
// file once without -march, asks gpunn_host_isa_level() what this CPU (and its
// operating system) supports, and builds it again for that level.

#define __host__
#define __device__
#define __forceinline__ inline

// CUDA's explicitly rounded arithmetic, which gpunn_math.cuh uses where its twin test
// is exact: the plain IEEE operations here (compiled with -ffp-contract=off), as in
// host_shim.cuh.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }

#include "gpunn_math.cuh"

#if defined(__x86_64__) || defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace {

// While one lives, float32 arithmetic flushes subnormal results to zero and reads
// subnormal operands as zero (MXCSR's FTZ and DAZ bits, restored on exit), as the
// GPU kernels do (CuPy compiles them with -ftz=true).  Why: a weight whose
// gradient is always exactly 0 (an input pixel that is 0 in every image, a dead
// ReLU unit) has its Adam moment m shrink by beta1 at every step, into the
// subnormals after ~800 steps, where it stays (0.1 m rounds to 0 there), and
// every subnormal operation is slow: with a third of the gradients 0, an Adam
// step took 137 us instead of 41 us.  Flushed, m stops at the smallest normals
// (its step 0.1 (0 - m) flushes to 0), a few times 1.2e-38 away from the twin's
// subnormal m; theta moves the same.  float64 keeps its subnormals (the GPU
// keeps them too), and so does any CPU but x86.
template <typename T>
struct SubnormalMode {};

#if defined(__x86_64__) || defined(__SSE__)
template <>
struct SubnormalMode<float> {
    const unsigned saved = _mm_getcsr();
    SubnormalMode() { _mm_setcsr(saved | 0x8040u); }  // FTZ (bit 15) and DAZ (bit 6)
    ~SubnormalMode() { _mm_setcsr(saved); }
};
#endif

// The loop bodies are instantiated once per combination of the switches, so that
// each compiled loop has no branch inside and vectorises.
template <typename T, bool Momentum, bool Nesterov, bool Decay, bool Scaled>
void sgd_loop(T* __restrict theta, const T* __restrict grad, T* __restrict velocity,
              const T* __restrict lr_scale, long n, T lr, T inv_m, T momentum,
              T weight_decay) {
    for (long i = 0; i < n; ++i) {
        T v = Momentum ? velocity[i] : T(0);
        theta[i] = gpunn::sgd_step(theta[i], grad[i], v, lr, inv_m, Momentum ? momentum : T(0),
                                   Decay ? weight_decay : T(0), Nesterov,
                                   Scaled ? lr_scale + i : static_cast<const T*>(nullptr));
        if (Momentum) {
            velocity[i] = v;
        }
    }
}

template <typename T, bool Momentum, bool Nesterov, bool Decay>
void sgd_dispatch_scaled(T* theta, const T* grad, T* velocity, const T* lr_scale, long n, T lr,
                         T inv_m, T momentum, T weight_decay) {
    if (lr_scale != nullptr) {
        sgd_loop<T, Momentum, Nesterov, Decay, true>(theta, grad, velocity, lr_scale, n, lr, inv_m,
                                                     momentum, weight_decay);
    } else {
        sgd_loop<T, Momentum, Nesterov, Decay, false>(theta, grad, velocity, lr_scale, n, lr, inv_m,
                                                      momentum, weight_decay);
    }
}

template <typename T, bool Momentum, bool Nesterov>
void sgd_dispatch_decay(T* theta, const T* grad, T* velocity, const T* lr_scale, long n, T lr,
                        T inv_m, T momentum, T weight_decay) {
    if (weight_decay != T(0)) {
        sgd_dispatch_scaled<T, Momentum, Nesterov, true>(theta, grad, velocity, lr_scale, n, lr, inv_m,
                                                          momentum, weight_decay);
    } else {
        sgd_dispatch_scaled<T, Momentum, Nesterov, false>(theta, grad, velocity, lr_scale, n, lr, inv_m,
                                                           momentum, weight_decay);
    }
}

template <typename T>
void sgd_update(T* theta, const T* grad, T* velocity, const T* lr_scale, long n, T lr, T inv_m,
                T momentum, T weight_decay, int nesterov) {
    if (momentum == T(0)) {
        sgd_dispatch_decay<T, false, false>(theta, grad, velocity, lr_scale, n, lr, inv_m, momentum,
                                            weight_decay);
    } else if (nesterov) {
        sgd_dispatch_decay<T, true, true>(theta, grad, velocity, lr_scale, n, lr, inv_m, momentum,
                                          weight_decay);
    } else {
        sgd_dispatch_decay<T, true, false>(theta, grad, velocity, lr_scale, n, lr, inv_m, momentum,
                                           weight_decay);
    }
}

template <typename T, bool L2, bool Decoupled>
void adam_loop(T* __restrict theta, const T* __restrict grad, T* __restrict m, T* __restrict v, long n,
               T inv_m, T one_minus_beta1, T beta2, T one_minus_beta2, T eps, T step_size,
               T bias_correction2_sqrt, T l2_decay, T decoupled_factor) {
    for (long i = 0; i < n; ++i) {
        T mi = m[i], vi = v[i];
        theta[i] = gpunn::adam_step(theta[i], grad[i], mi, vi, inv_m, one_minus_beta1, beta2, one_minus_beta2,
                                    eps, step_size, bias_correction2_sqrt, L2 ? l2_decay : T(0),
                                    Decoupled ? decoupled_factor : T(1));
        m[i] = mi;
        v[i] = vi;
    }
}

// Adam / AdamW over n elements: the scalars as the adam_update kernel works them
// out (gpunn::adam_scalars, in double, then rounded to T), from the step number
// *step (already counting this step), read at each call as the kernel reads it.
template <typename T>
void adam_update(T* theta, const T* grad, T* m, T* v, long n, const int* step, T inv_m,
                 double lr, double beta1, double beta2, double eps, double weight_decay, int decoupled) {
    const gpunn::AdamScalars s = gpunn::adam_scalars(lr, beta1, beta2, *step);
    const T l2_decay = decoupled ? T(0) : T(weight_decay);
    const T decoupled_factor = decoupled ? T(1.0 - lr * weight_decay) : T(1);
    const T args[] = {T(1.0 - beta1), T(beta2), T(1.0 - beta2), T(eps), T(s.step_size),
                      T(s.bias_correction2_sqrt)};
    if (l2_decay != T(0)) {
        adam_loop<T, true, false>(theta, grad, m, v, n, inv_m, args[0], args[1], args[2], args[3],
                                  args[4], args[5], l2_decay, decoupled_factor);
    } else if (decoupled_factor != T(1)) {
        adam_loop<T, false, true>(theta, grad, m, v, n, inv_m, args[0], args[1], args[2], args[3],
                                  args[4], args[5], l2_decay, decoupled_factor);
    } else {
        adam_loop<T, false, false>(theta, grad, m, v, n, inv_m, args[0], args[1], args[2], args[3],
                                   args[4], args[5], l2_decay, decoupled_factor);
    }
}

}  // namespace

// The exported loops; 1/m (the one argument that changes between steps: the last
// batch may be short) comes last, so that the caller can bind all the others once.
#define GPUNN_HOST_UPDATES(T, SUFFIX)                                                                          \
    extern "C" __attribute__((visibility("default"))) void gpunn_sgd_update##SUFFIX(                           \
        T* theta, const T* grad, T* velocity, const T* lr_scale, long n, T lr, T momentum, T weight_decay,     \
        int nesterov, T inv_m) {                                                                               \
        [[maybe_unused]] SubnormalMode<T> flush;                                                               \
        sgd_update<T>(theta, grad, velocity, lr_scale, n, lr, inv_m, momentum, weight_decay, nesterov);        \
    }                                                                                                          \
    extern "C" __attribute__((visibility("default"))) void gpunn_adam_update##SUFFIX(                          \
        T* theta, const T* grad, T* m, T* v, long n, const int* step, double lr, double beta1, double beta2,   \
        double eps, double weight_decay, int decoupled, T inv_m) {                                             \
        [[maybe_unused]] SubnormalMode<T> flush;                                                               \
        adam_update<T>(theta, grad, m, v, n, step, inv_m, lr, beta1, beta2, eps, weight_decay, decoupled);     \
    }

GPUNN_HOST_UPDATES(float, _f32)
GPUNN_HOST_UPDATES(double, _f64)

// The x86-64 micro-architecture level this CPU runs (4: AVX-512, 3: AVX2 and FMA,
// 1: the baseline; 1 on any other architecture or compiler).  The GCC/Clang
// builtins also check that the operating system saves the vector registers.
extern "C" __attribute__((visibility("default"))) int gpunn_host_isa_level() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
    const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                    __builtin_cpu_supports("avx512vl");
    return v4 ? 4 : v3 ? 3 : 1;
#else
    return 1;
#endif
}
