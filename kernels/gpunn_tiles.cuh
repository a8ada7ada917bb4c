// gpunn_tiles.cuh: the block-level building blocks of gpunn's kernels: a matrix
// product tiled through shared memory with a fused epilogue, and a deterministic
// sum over the blocks of a launch.
//
// Unlike gpunn_math.cuh, these use __shared__ memory and __syncthreads(), so on
// the CPU they need the block-level executor of host_shim.cuh (fibers that switch
// at each barrier).  Every thread of a block reaches every barrier: bounds are
// checked around loads and stores, never around a barrier.
//
// Determinism: each output of the product is one thread's running sum over the
// inner index k = 0, 1, 2, ... in order, and the block sums add their terms in a
// fixed tree, then the blocks' partial sums in block order, whatever order the
// blocks run in.  So a kernel built from these gives the same bits on every run
// on the same device (there are no floating-point atomics).

#ifndef GPUNN_TILES_CUH
#define GPUNN_TILES_CUH

namespace gpunn {

// ---- tiled product: C = epilogue(op(A) op(B)) -----------------------------------------
// A block of TILE x TILE threads computes a TILE x TILE tile of C, one element per
// thread, walking the inner dimension TILE_K at a time: the block copies a
// TILE x TILE_K slice of op(A) and a TILE_K x TILE slice of op(B) into shared
// memory (each thread two elements of each, coalesced along whichever index is
// contiguous in memory), then every thread adds TILE_K products.  The next slice
// is loaded into registers while the current one is being used, so the global
// loads of stage s + 1 overlap the arithmetic of stage s.
constexpr int TILE = 16;
constexpr int TILE_K = 32;
constexpr int TILE_THREADS = TILE * TILE;
constexpr int TILE_LOADS = TILE * TILE_K / TILE_THREADS;  // elements of each operand per thread and stage

// One operand of a product, op(A) or op(B), seen as (outer index o, inner index k):
// o is the row of op(A) or the column of op(B), k the inner (summed) index.  In
// memory, element (o, k) is data[o * ld + k] (k contiguous) or, when
// OuterContiguous, data[k * ld + o] (o contiguous).  So for C = op(A) op(B):
//   op(A) = A (A[r * lda + k]):      OuterContiguous = false
//   op(A) = A^T (A[k * lda + r]):    OuterContiguous = true
//   op(B) = B (B[k * ldb + c]):      OuterContiguous = true
//   op(B) = B^T (B[c * ldb + k]):    OuterContiguous = false
// Elements outside the matrix read as 0.
template <typename T, bool OuterContiguous>
struct Operand {
    const T* data;
    int ld;
    int outer;  // rows of op(A) / columns of op(B)
    int depth;  // the inner dimension

    __device__ __forceinline__ T at(int o, int k) const {
        if (o >= outer || k >= depth) return T(0);
        return OuterContiguous ? data[k * ld + o] : data[o * ld + k];
    }

    // Element number `e` (0 .. TILE * TILE_K - 1) of a TILE x TILE_K slice as (outer
    // offset, inner offset), numbered so that consecutive threads read consecutive addresses.
    __device__ __forceinline__ void slot(int e, int& o, int& k) const {
        if (OuterContiguous) {
            o = e % TILE;
            k = e / TILE;
        } else {
            k = e % TILE_K;
            o = e / TILE_K;
        }
    }
};

// For r < rows, c < cols: epilogue(r, c, sum over k of op(A)(r, k) * op(B)(k, c)).
// Launch with blockDim (TILE, TILE) and gridDim (ceil(cols / TILE), ceil(rows / TILE)).
// The epilogue writes C (and may read other arrays at (r, c)); it is called once
// per output element, by the thread that computed it.
template <typename T, bool AOuterContiguous, bool BOuterContiguous, typename Epilogue>
__device__ void tiled_product(const Operand<T, AOuterContiguous>& a, const Operand<T, BOuterContiguous>& b,
                              const Epilogue& epilogue) {
    __shared__ T a_tile[TILE_K][TILE + 1];  // a_tile[k][r]; +1: no bank conflicts on the stores
    __shared__ T b_tile[TILE_K][TILE + 1];  // b_tile[k][c]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int t = ty * TILE + tx;
    const int row0 = blockIdx.y * TILE, col0 = blockIdx.x * TILE;
    const int depth = a.depth;

    T a_next[TILE_LOADS], b_next[TILE_LOADS];
    auto load = [&](int k0) {
        for (int j = 0; j < TILE_LOADS; ++j) {
            int o, k;
            a.slot(t + j * TILE_THREADS, o, k);
            a_next[j] = a.at(row0 + o, k0 + k);
            b.slot(t + j * TILE_THREADS, o, k);
            b_next[j] = b.at(col0 + o, k0 + k);
        }
    };

    T sum = T(0);
    load(0);
    for (int k0 = 0; k0 < depth; k0 += TILE_K) {
        for (int j = 0; j < TILE_LOADS; ++j) {
            int o, k;
            a.slot(t + j * TILE_THREADS, o, k);
            a_tile[k][o] = a_next[j];
            b.slot(t + j * TILE_THREADS, o, k);
            b_tile[k][o] = b_next[j];
        }
        __syncthreads();
        if (k0 + TILE_K < depth) {
            load(k0 + TILE_K);  // in flight while this slice is used
        }
        for (int k = 0; k < TILE_K; ++k) {
            sum += a_tile[k][ty] * b_tile[k][tx];
        }
        __syncthreads();  // the slice may be overwritten only once every thread is done with it
    }
    const int r = row0 + ty, c = col0 + tx;
    if (r < a.outer && c < b.outer) {
        epilogue(r, c, sum);
    }
}

// ---- a deterministic sum over the blocks of a launch ------------------------------------
// Each thread brings its partial loss (double) and hit count; the block adds them
// up in a fixed tree through shared memory; thread 0 writes the block's sums to
// slot blockIdx.x of the scratch arrays; and the block that arrives last (counted
// with atomicInc on *arrivals, which wraps back to 0 for the next launch) adds
// the slots in block order 0, 1, 2, ... to *loss_sum and *correct.  No
// floating-point atomics: the result does not depend on the order the blocks ran in.
// blockDim.x must be a power of two, at most REDUCE_THREADS; every thread of the
// block must call this, once.
constexpr int REDUCE_THREADS = 256;

__device__ inline void sum_over_blocks(double loss, unsigned long long hits, double* loss_sum,
                                       unsigned long long* correct, double* block_loss,
                                       unsigned long long* block_hits, unsigned int* arrivals) {
    __shared__ double loss_tree[REDUCE_THREADS];
    __shared__ unsigned long long hit_tree[REDUCE_THREADS];
    __shared__ int last_block;
    const int t = threadIdx.x;
    loss_tree[t] = loss;
    hit_tree[t] = hits;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) {
            loss_tree[t] += loss_tree[t + half];
            hit_tree[t] += hit_tree[t + half];
        }
        __syncthreads();
    }
    if (t == 0) {
        block_loss[blockIdx.x] = loss_tree[0];
        block_hits[blockIdx.x] = hit_tree[0];
        __threadfence();  // the slots are visible to every block before this one is counted
        last_block = atomicInc(arrivals, gridDim.x - 1) == gridDim.x - 1;
    }
    __syncthreads();
    if (t == 0 && last_block) {
        // volatile: read the other blocks' slots from memory, not from a stale cache line
        const volatile double* slots = block_loss;
        const volatile unsigned long long* hit_slots = block_hits;
        double total = 0.0;
        unsigned long long total_hits = 0;
        for (unsigned int b = 0; b < gridDim.x; ++b) {
            total += slots[b];
            total_hits += hit_slots[b];
        }
        *loss_sum += total;
        *correct += total_hits;
    }
}

}  // namespace gpunn

#endif  // GPUNN_TILES_CUH
