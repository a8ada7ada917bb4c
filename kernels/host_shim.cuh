// host_shim.cuh: compile CUDA kernels as plain C++ and run them on the CPU, block by block.
//
// gpunn/host_kernels.py builds one C++ file from this shim, the kernel source and
// one GPUNN_HOST_EXPORT(name) line per kernel, with g++ -O2 (IEEE float math: no
// fast-math, no FMA contraction).  The shim
// * defines the CUDA qualifiers away;
// * runs the threads of a block as cooperative fibers (ucontext) that switch
//   only at __syncthreads(): a barrier completes when every thread of the block
//   has reached it; a block where some threads finish while others wait at a
//   barrier fails the launch with a "barrier divergence" error;
// * gives each block one fresh copy of the kernel's __shared__ variables,
//   poisoned (every byte 0xFF: NaN as float or double, -1 as an int), so a read
//   of a slot that no thread of the block has written yet shows;
// * provides gridDim/blockDim/blockIdx/threadIdx for 1-, 2- and 3-D launches
//   (threadIdx is switched with the fiber);
// * provides atomicAdd, atomicInc and __threadfence with their CUDA meaning for
//   one thread at a time (launches are serialized and fibers switch only at
//   barriers, see below);
// * provides the rounded arithmetic intrinsics (__fmul_rn, __fadd_rn, __fsub_rn and
//   their double twins __dmul_rn, ...) as plain IEEE operations;
// * runs the blocks of a launch in order, or, after gpunn_host_shuffle_blocks(seed)
//   with a seed other than 0, in a pseudo-random order that changes from launch to
//   launch (CUDA promises no block order; a kernel whose result depends on it shows
//   this way);
// * and exports, for each kernel K,
//     int launch_K(const unsigned grid[3], const unsigned block[3], void* const* args,
//                  char* error, size_t error_capacity)
//       runs the launch; args holds one pointer per kernel parameter, to that
//       parameter's value (the convention of cuLaunchKernel); returns 0, or 1
//       with a message in error (bad launch dimensions, barrier divergence);
//     int arg_sizes_K(size_t* sizes, int capacity)
//       writes sizeof of each parameter and returns how many there are, so the
//       caller can check its argument list before launching;
//   and once per library
//     void gpunn_host_shuffle_blocks(unsigned long long seed)
//       0: blocks in order (the default); else each launch permutes its blocks
//       with a generator seeded from `seed` and the number of launches so far.
//
// Fast path: thread 0 of each block runs on a fiber first.  If it finishes
// without reaching a barrier, the block's other threads run as plain calls, one
// after another (one of them reaching a barrier is then a divergence: thread 0
// has left).  Only if thread 0 waits at a barrier does every thread get a fiber.
// So a kernel without barriers pays one fiber start per block (~0.5 us), and a
// kernel with barriers two swapcontext calls per thread and barrier (each saves
// the signal mask with a system call: ~0.3 us).
//
// Shared memory: `__shared__ T x[N];` becomes a call to on_shared_declaration()
// followed by `static thread_local T x[N];`: one copy per kernel, reused block
// after block (blocks run one after another) and poisoned by the first
// declaration a block executes, which precedes any use.  thread_local is there
// to make the copies findable: the shim keeps its own state out of TLS, so this
// library's TLS segment holds only __shared__ variables (and tls_anchor), and
// poisoning is one memset of it.  (A linker section would not do: g++ ignores
// section attributes on the static locals of templates.)
//
// Limits:
// * fibers switch only at barriers and always in thread order, so races within
//   a barrier interval cannot show (a thread sees what lower threads wrote);
// * no warp-level intrinsics (__shfl*, __syncwarp, votes) and no
//   __syncthreads_count/_and/_or;
// * __shared__ must begin a declaration in a function body; no dynamic
//   (extern __shared__) shared memory; kernel code must not use thread_local;
// * at most 1024 threads per block; each fiber has a 64 KiB stack with a guard
//   page below it; a divergence leaves the kernel by longjmp (no destructors);
// * launches are serialized by a mutex: no two run at once in one library;
// * float32 subnormals are kept here but flushed to zero on the GPU (CuPy
//   compiles with -ftz=true).

#ifndef GPUNN_HOST_SHIM_CUH
#define GPUNN_HOST_SHIM_CUH

#include <link.h>
#include <math.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <utility>
#include <vector>

// Mutants, only for tests/test_host_barriers.py, which defines these to 1 to show
// that its tests fail without barrier switching or without poisoning.
#ifndef GPUNN_HOST_MUTANT_SEQUENTIAL  // barriers do nothing; each thread runs to its end in turn
#define GPUNN_HOST_MUTANT_SEQUENTIAL 0
#endif
#ifndef GPUNN_HOST_MUTANT_UNPOISONED  // shared memory keeps what the previous block left there
#define GPUNN_HOST_MUTANT_UNPOISONED 0
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__                                \
    ::gpunn_host::on_shared_declaration();        \
    static thread_local

struct gpunn_dim3 {
    unsigned int x, y, z;
};

// Not thread_local: the TLS segment is reserved for __shared__, and launches are serialized.
static gpunn_dim3 gridDim, blockDim, blockIdx, threadIdx;

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

// CUDA's atomicInc: *address = (old >= limit) ? 0 : old + 1; returns old.
inline unsigned int atomicInc(unsigned int* address, unsigned int limit) {
    const unsigned int old = *address;
    *address = (old >= limit) ? 0u : old + 1u;
    return old;
}

// One thread runs at a time, so its writes are seen by every later reader already.
inline void __threadfence() {}

// CUDA's explicitly rounded arithmetic (round to nearest even, never contracted into an
// FMA): on the host the plain IEEE operation, since gpunn/host_kernels.py compiles with
// -ffp-contract=off.  (No flush to zero here, unlike the GPU under CuPy's -ftz=true.)
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }

namespace gpunn_host {

constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr std::size_t kFiberStackBytes = 64 * 1024;

enum class FiberStatus : unsigned char { running, at_barrier, finished };

struct Fiber {
    ucontext_t context;  // never moved: on x86_64 it points into itself
    FiberStatus status;
};

// Fiber stacks, each above an inaccessible guard page, so that an overflow faults
// instead of overwriting the neighbouring stack.  Grown on demand, never shrunk.
class FiberStacks {
  public:
    bool reserve(unsigned count) {
        if (count <= count_) {
            return true;
        }
        const std::size_t guard = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        const std::size_t stride = guard + kFiberStackBytes;
        void* memory = mmap(nullptr, stride * count, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (memory == MAP_FAILED) {
            return false;
        }
        for (unsigned i = 0; i < count; ++i) {
            mprotect(static_cast<char*>(memory) + i * stride, guard, PROT_NONE);
        }
        if (memory_ != nullptr) {
            munmap(memory_, stride_ * count_);
        }
        memory_ = static_cast<char*>(memory);
        count_ = count;
        stride_ = stride;
        guard_ = guard;
        return true;
    }

    void* stack(unsigned i) const { return memory_ + i * stride_ + guard_; }

  private:
    char* memory_ = nullptr;
    unsigned count_ = 0;
    std::size_t stride_ = 0;
    std::size_t guard_ = 0;
};

// The launch in progress (one at a time: launch_mutex).
struct Executor {
    void (*run_thread)(const void*) = nullptr;  // runs the kernel for the current threadIdx
    const void* kernel_call = nullptr;
    unsigned threads = 0;          // per block
    unsigned current = 0;          // the fiber running now
    bool on_fiber = false;         // the running thread is a fiber, not a plain call
    bool shared_poisoned = false;  // this block's shared memory is poisoned already
    std::uint64_t block_order_seed = 0;  // 0: blocks in order; else shuffled per launch
    std::uint64_t launches = 0;          // launches so far, mixed into each shuffle
    std::vector<std::uint64_t> block_order;
    char* error = nullptr;
    std::size_t error_capacity = 0;
    std::unique_ptr<Fiber[]> fibers;
    FiberStacks stacks;
    ucontext_t scheduler;
    jmp_buf plain_call_exit;
};

static Executor executor;
static std::mutex launch_mutex;

inline gpunn_dim3 thread_index(unsigned t) {
    return {t % blockDim.x, t / blockDim.x % blockDim.y, t / (blockDim.x * blockDim.y)};
}

// Writes the launch's error message; returns false, the block's result.
inline bool report_divergence(gpunn_dim3 waiting, gpunn_dim3 finished) {
    std::snprintf(executor.error, executor.error_capacity,
                  "barrier divergence in block (%u,%u,%u): thread (%u,%u,%u) waits at "
                  "__syncthreads() but thread (%u,%u,%u) finished without reaching it; every "
                  "thread of a block must reach the same __syncthreads() calls",
                  blockIdx.x, blockIdx.y, blockIdx.z, waiting.x, waiting.y, waiting.z,
                  finished.x, finished.y, finished.z);
    return false;
}

// ---- fibers ----------------------------------------------------------------------

inline void fiber_main() {
    executor.run_thread(executor.kernel_call);
    executor.fibers[executor.current].status = FiberStatus::finished;
}  // returns to executor.scheduler through uc_link

// Runs thread t until it reaches a barrier or finishes.
inline void resume(unsigned t) {
    Executor& e = executor;
    e.current = t;
    threadIdx = thread_index(t);
    e.fibers[t].status = FiberStatus::running;
    e.on_fiber = true;
    swapcontext(&e.scheduler, &e.fibers[t].context);
    e.on_fiber = false;
}

inline void start_fiber(unsigned t) {
    ucontext_t& context = executor.fibers[t].context;
    context.uc_stack.ss_sp = executor.stacks.stack(t);
    context.uc_stack.ss_size = kFiberStackBytes;
    context.uc_link = &executor.scheduler;
    makecontext(&context, fiber_main, 0);
    resume(t);
}

inline bool all_fibers_are(FiberStatus status) {
    for (unsigned t = 0; t < executor.threads; ++t) {
        if (executor.fibers[t].status != status) {
            return false;
        }
    }
    return true;
}

inline unsigned first_fiber(FiberStatus status) {
    unsigned t = 0;
    while (executor.fibers[t].status != status) {
        ++t;
    }
    return t;
}

// Thread 0 waits at its first barrier: give every other thread a fiber, then run
// the block barrier interval by barrier interval.
inline bool run_block_on_fibers() {
    for (unsigned t = 1; t < executor.threads; ++t) {
        start_fiber(t);
    }
    while (all_fibers_are(FiberStatus::at_barrier)) {
        for (unsigned t = 0; t < executor.threads; ++t) {
            resume(t);
        }
    }
    if (all_fibers_are(FiberStatus::finished)) {
        return true;
    }
    return report_divergence(thread_index(first_fiber(FiberStatus::at_barrier)),
                             thread_index(first_fiber(FiberStatus::finished)));
}

inline void barrier() {
    Executor& e = executor;
    if (e.on_fiber) {
        e.fibers[e.current].status = FiberStatus::at_barrier;
        swapcontext(&e.fibers[e.current].context, &e.scheduler);
        return;
    }
    if (GPUNN_HOST_MUTANT_SEQUENTIAL) {
        return;
    }
    // A plain call: thread 0 of this block has finished without reaching this barrier.
    report_divergence(threadIdx, {0, 0, 0});
    longjmp(e.plain_call_exit, 1);
}

// ---- shared memory ------------------------------------------------------------------

// Touched before the TLS segment is looked up, so that this OS thread has one.
static thread_local volatile char tls_anchor;

struct Memory {
    void* data;
    std::size_t size;
};

// dl_iterate_phdr callback: stops at the module that holds this code, with its TLS segment.
inline int find_own_tls(dl_phdr_info* info, std::size_t, void* found) {
    const auto own_address = reinterpret_cast<ElfW(Addr)>(&executor);
    bool own_module = false;
    const ElfW(Phdr)* tls = nullptr;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& header = info->dlpi_phdr[i];
        const ElfW(Addr) start = info->dlpi_addr + header.p_vaddr;
        if (header.p_type == PT_LOAD && start <= own_address && own_address < start + header.p_memsz) {
            own_module = true;
        }
        if (header.p_type == PT_TLS) {
            tls = &header;
        }
    }
    if (!own_module) {
        return 0;
    }
    if (tls != nullptr) {
        *static_cast<Memory*>(found) = {info->dlpi_tls_data, tls->p_memsz};
    }
    return 1;
}

// This library's TLS segment in the calling OS thread: its __shared__ variables.
inline Memory shared_memory() {
    tls_anchor = 1;
    Memory found{nullptr, 0};
    dl_iterate_phdr(find_own_tls, &found);
    if (found.data == nullptr) {
        std::fputs("gpunn host shim: cannot find the TLS block of __shared__ variables\n", stderr);
        std::abort();
    }
    return found;
}

inline void on_shared_declaration() {
    if (executor.shared_poisoned || GPUNN_HOST_MUTANT_UNPOISONED) {
        return;
    }
    executor.shared_poisoned = true;
    const Memory shared = shared_memory();
    std::memset(shared.data, 0xFF, shared.size);
}

// ---- launches -----------------------------------------------------------------------

template <typename... Params>
class KernelCall {
  public:
    KernelCall(void (*kernel)(Params...), void* const* args) : kernel_(kernel), args_(args) {}

    void operator()() const { call(std::index_sequence_for<Params...>{}); }

    static void run(const void* self) { (*static_cast<const KernelCall*>(self))(); }

  private:
    template <std::size_t... I>
    void call(std::index_sequence<I...>) const {
        kernel_(*static_cast<Params*>(args_[I])...);
    }

    void (*kernel_)(Params...);
    void* const* args_;
};

// Runs the block's threads from `first` on as plain calls, in order; false if one
// of them reached a barrier.
template <typename Call>
bool run_block_as_calls(const Call& call, unsigned first) {
    if (setjmp(executor.plain_call_exit) != 0) {
        return false;
    }
    unsigned t = 0;
    for (unsigned z = 0; z < blockDim.z; ++z) {
        for (unsigned y = 0; y < blockDim.y; ++y) {
            for (unsigned x = 0; x < blockDim.x; ++x) {
                if (t++ >= first) {
                    threadIdx = {x, y, z};
                    call();
                }
            }
        }
    }
    return true;
}

template <typename Call>
bool run_block(const Call& call) {
    executor.shared_poisoned = false;
    if (GPUNN_HOST_MUTANT_SEQUENTIAL) {
        return run_block_as_calls(call, 0);
    }
    start_fiber(0);
    if (executor.fibers[0].status == FiberStatus::at_barrier) {
        return run_block_on_fibers();
    }
    return run_block_as_calls(call, 1);
}

// Checks the launch dimensions against CUDA's limits and makes the fibers.
inline bool prepare(const unsigned* grid, const unsigned* block) {
    Executor& e = executor;
    const unsigned long long threads = 1ULL * block[0] * block[1] * block[2];
    if (threads == 0 || threads > kMaxThreadsPerBlock || block[2] > 64 || grid[0] == 0 ||
        grid[1] == 0 || grid[2] == 0 || grid[0] > 2147483647u || grid[1] > 65535 ||
        grid[2] > 65535) {
        std::snprintf(e.error, e.error_capacity,
                      "bad launch dimensions: grid (%u,%u,%u), block (%u,%u,%u); CUDA allows 1 "
                      "to 1024 threads per block (z at most 64) and grids up to "
                      "(2^31-1, 65535, 65535)",
                      grid[0], grid[1], grid[2], block[0], block[1], block[2]);
        return false;
    }
    if (!e.fibers) {
        e.fibers.reset(new Fiber[kMaxThreadsPerBlock]);
        for (unsigned t = 0; t < kMaxThreadsPerBlock; ++t) {
            getcontext(&e.fibers[t].context);
        }
    }
    if (!e.stacks.reserve(static_cast<unsigned>(threads))) {
        std::snprintf(e.error, e.error_capacity, "no memory for %llu fiber stacks", threads);
        return false;
    }
    e.threads = static_cast<unsigned>(threads);
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    return true;
}

// splitmix64: a small, well-mixed generator for the block shuffle.
inline std::uint64_t next_random(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Fills e.block_order with a Fisher-Yates permutation of the launch's linear
// block numbers, from the seed and the number of launches so far.
inline void shuffle_block_order(std::uint64_t blocks) {
    Executor& e = executor;
    e.block_order.resize(blocks);
    std::iota(e.block_order.begin(), e.block_order.end(), std::uint64_t{0});
    std::uint64_t state = e.block_order_seed ^ (e.launches * 0xD1B54A32D192ED03ULL);
    for (std::uint64_t i = blocks; i > 1; --i) {
        std::swap(e.block_order[i - 1], e.block_order[next_random(state) % i]);
    }
}

template <typename... Params>
int launch(void (*kernel)(Params...), const unsigned* grid, const unsigned* block,
           void* const* args, char* error, std::size_t error_capacity) {
    std::lock_guard<std::mutex> lock(launch_mutex);
    Executor& e = executor;
    e.error = error;
    e.error_capacity = error_capacity;
    if (!prepare(grid, block)) {
        return 1;
    }
    const KernelCall<Params...> call(kernel, args);
    e.run_thread = &KernelCall<Params...>::run;
    e.kernel_call = &call;
    const std::uint64_t x_blocks = gridDim.x, xy_blocks = x_blocks * gridDim.y;
    const std::uint64_t blocks = xy_blocks * gridDim.z;
    const bool shuffled = e.block_order_seed != 0;
    if (shuffled) {
        shuffle_block_order(blocks);
    }
    ++e.launches;
    for (std::uint64_t i = 0; i < blocks; ++i) {
        const std::uint64_t b = shuffled ? e.block_order[i] : i;
        blockIdx = {static_cast<unsigned>(b % x_blocks), static_cast<unsigned>(b / x_blocks % gridDim.y),
                    static_cast<unsigned>(b / xy_blocks)};
        if (!run_block(call)) {
            return 1;
        }
    }
    return 0;
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

inline void __syncthreads() { gpunn_host::barrier(); }

extern "C" __attribute__((visibility("default"))) void gpunn_host_shuffle_blocks(unsigned long long seed) {
    std::lock_guard<std::mutex> lock(gpunn_host::launch_mutex);
    gpunn_host::executor.block_order_seed = seed;
    gpunn_host::executor.launches = 0;
}

#define GPUNN_HOST_EXPORT(kernel)                                                          \
    extern "C" __attribute__((visibility("default"))) int launch_##kernel(                 \
        const unsigned* grid, const unsigned* block, void* const* args, char* error,       \
        std::size_t error_capacity) {                                                      \
        return gpunn_host::launch(kernel, grid, block, args, error, error_capacity);       \
    }                                                                                      \
    extern "C" __attribute__((visibility("default"))) int arg_sizes_##kernel(              \
        std::size_t* sizes, int capacity) {                                                \
        return gpunn_host::arg_sizes(kernel, sizes, capacity);                             \
    }

#endif  // GPUNN_HOST_SHIM_CUH
