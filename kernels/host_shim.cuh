// host_shim.cuh: compile gpunn's CUDA kernels as plain C++ and run them on the CPU.
//
// gpunn/host_kernels.py builds one C++ file from this shim, the kernel source
// (gpunn_kernels.cu with gpunn_math.cuh inlined) and one GPUNN_HOST_EXPORT(name)
// line per kernel, with g++ -O2 (IEEE float math: no fast-math, no FMA
// contraction).  The shim
// * defines the CUDA qualifiers away,
// * provides gridDim/blockDim/blockIdx/threadIdx (thread_local, so concurrent
//   launches from several Python threads do not disturb each other),
// * provides atomicAdd as a plain add (threads run one after another),
// * and exports, for each kernel K,
//     void launch_K(unsigned grid, unsigned block, void* const* args)
//       runs every thread of every block of a 1-D launch, in order; args
//       holds one pointer per kernel parameter, to that parameter's value
//       (the convention of cuLaunchKernel);
//     int arg_sizes_K(size_t* sizes, int capacity)
//       writes sizeof of each parameter and returns how many there are, so the
//       caller can check its argument list before launching.
//
// Limits: threads run sequentially, so this only emulates kernels whose threads
// do not communicate (no shared memory, no __syncthreads, no warp intrinsics),
// and it cannot reveal races.  Float32 subnormals are kept here but flushed to
// zero on the GPU (CuPy compiles with -ftz=true).

#ifndef GPUNN_HOST_SHIM_CUH
#define GPUNN_HOST_SHIM_CUH

#include <math.h>

#include <cstddef>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct gpunn_dim3 {
    unsigned int x, y, z;
};

static thread_local gpunn_dim3 gridDim, blockDim, blockIdx, threadIdx;

inline double atomicAdd(double* address, double value) {
    const double old = *address;
    *address = old + value;
    return old;
}

inline unsigned long long atomicAdd(unsigned long long* address, unsigned long long value) {
    const unsigned long long old = *address;
    *address = old + value;
    return old;
}

namespace gpunn_host {

template <typename... Params, std::size_t... I>
void call_kernel(void (*kernel)(Params...), void* const* args, std::index_sequence<I...>) {
    kernel(*static_cast<Params*>(args[I])...);
}

template <typename... Params>
void launch(void (*kernel)(Params...), unsigned grid, unsigned block, void* const* args) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned b = 0; b < grid; ++b) {
        for (unsigned t = 0; t < block; ++t) {
            blockIdx = {b, 0, 0};
            threadIdx = {t, 0, 0};
            call_kernel(kernel, args, std::index_sequence_for<Params...>{});
        }
    }
}

template <typename... Params>
int arg_sizes(void (*)(Params...), std::size_t* sizes, int capacity) {
    const std::size_t each[] = {sizeof(Params)...};
    const int count = static_cast<int>(sizeof...(Params));
    for (int i = 0; i < count && i < capacity; ++i) {
        sizes[i] = each[i];
    }
    return count;
}

}  // namespace gpunn_host

#define GPUNN_HOST_EXPORT(kernel)                                                          \
    extern "C" void launch_##kernel(unsigned grid, unsigned block, void* const* args) {     \
        gpunn_host::launch(kernel, grid, block, args);                                     \
    }                                                                                      \
    extern "C" int arg_sizes_##kernel(std::size_t* sizes, int capacity) {                  \
        return gpunn_host::arg_sizes(kernel, sizes, capacity);                             \
    }

#endif  // GPUNN_HOST_SHIM_CUH
