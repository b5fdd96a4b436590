// SPLADE's LM head fused with its max-pooling: out[i, v] = max over text i's tokens t of
// states[t] . W[v]. The logits live only in registers, so the [tokens, vocab] matrix that
// torch.mm + amax writes and reads back (hundreds of MB per batch) never exists.
//
// W is packed by the caller as [ceil(V/16)][K][16] (16 vocabulary rows interleaved per k), so
// one 16-term tile is 2 AVX registers per k (one AVX-512 register) and stays in L1 while every
// token of the batch streams past it. Threads share the tiles. Without AVX2+FMA a scalar loop
// computes the same. Every path sums over k in the same order with one FMA per step, so the
// AVX2 and AVX-512 paths give the same floats.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LSR_SPLADE_AVX2 1
#endif
#if defined(__AVX512F__)
#define LSR_SPLADE_AVX512 1
#endif

namespace lsr {

constexpr int kTile = 16;

#ifdef LSR_SPLADE_AVX2
// Max over rows [a, b) of states . tile, for the 16 terms of one packed tile.
inline void tile_max_avx2(const float* states, int64_t K, const float* tile, int64_t a, int64_t b,
                          float* out16) {
  const float ninf = -std::numeric_limits<float>::infinity();
  __m256 m0 = _mm256_set1_ps(ninf), m1 = _mm256_set1_ps(ninf);
  int64_t t = a;
  for (; t + 6 <= b; t += 6) {  // 6 tokens x 16 terms: 12 accumulators
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
           c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(),
           c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps(),
           c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    const float* r = states + t * K;
    for (int64_t k = 0; k < K; ++k) {
      __m256 w0 = _mm256_loadu_ps(tile + k * kTile), w1 = _mm256_loadu_ps(tile + k * kTile + 8);
      __m256 h = _mm256_broadcast_ss(r + k);
      c00 = _mm256_fmadd_ps(h, w0, c00); c01 = _mm256_fmadd_ps(h, w1, c01);
      h = _mm256_broadcast_ss(r + K + k);
      c10 = _mm256_fmadd_ps(h, w0, c10); c11 = _mm256_fmadd_ps(h, w1, c11);
      h = _mm256_broadcast_ss(r + 2 * K + k);
      c20 = _mm256_fmadd_ps(h, w0, c20); c21 = _mm256_fmadd_ps(h, w1, c21);
      h = _mm256_broadcast_ss(r + 3 * K + k);
      c30 = _mm256_fmadd_ps(h, w0, c30); c31 = _mm256_fmadd_ps(h, w1, c31);
      h = _mm256_broadcast_ss(r + 4 * K + k);
      c40 = _mm256_fmadd_ps(h, w0, c40); c41 = _mm256_fmadd_ps(h, w1, c41);
      h = _mm256_broadcast_ss(r + 5 * K + k);
      c50 = _mm256_fmadd_ps(h, w0, c50); c51 = _mm256_fmadd_ps(h, w1, c51);
    }
    m0 = _mm256_max_ps(m0, _mm256_max_ps(_mm256_max_ps(c00, c10), _mm256_max_ps(c20, c30)));
    m0 = _mm256_max_ps(m0, _mm256_max_ps(c40, c50));
    m1 = _mm256_max_ps(m1, _mm256_max_ps(_mm256_max_ps(c01, c11), _mm256_max_ps(c21, c31)));
    m1 = _mm256_max_ps(m1, _mm256_max_ps(c41, c51));
  }
  for (; t < b; ++t) {  // the last < 6 tokens, one at a time
    __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps();
    const float* r = states + t * K;
    for (int64_t k = 0; k < K; ++k) {
      __m256 h = _mm256_broadcast_ss(r + k);
      c0 = _mm256_fmadd_ps(h, _mm256_loadu_ps(tile + k * kTile), c0);
      c1 = _mm256_fmadd_ps(h, _mm256_loadu_ps(tile + k * kTile + 8), c1);
    }
    m0 = _mm256_max_ps(m0, c0);
    m1 = _mm256_max_ps(m1, c1);
  }
  _mm256_storeu_ps(out16, m0);
  _mm256_storeu_ps(out16 + 8, m1);
}
#endif

#ifdef LSR_SPLADE_AVX512
// As tile_max_avx2 with one 16-wide register per token: up to 12 tokens per pass share each
// weight load (half the instructions per logit of the AVX2 path), the rest in passes of 8, 4,
// 2 and 1, so a lone query's ~20 tokens take two or three passes.
// max of two registers; _mm512_max_ps trips GCC 12's -Wmaybe-uninitialized (its undefined
// pass-through operand), the masked form with every lane set does not
inline __m512 max16(__m512 a, __m512 b) { return _mm512_mask_max_ps(a, (__mmask16)0xFFFF, a, b); }

template <int R>
inline __m512 tokens_max_avx512(const float* s, int64_t K, const float* tile, __m512 m) {
  __m512 c[R];
  for (int r = 0; r < R; ++r) c[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m512 w = _mm512_loadu_ps(tile + k * kTile);
    for (int r = 0; r < R; ++r) c[r] = _mm512_fmadd_ps(_mm512_set1_ps(s[r * K + k]), w, c[r]);
  }
  for (int r = 0; r < R; ++r) m = max16(m, c[r]);
  return m;
}

inline void tile_max_avx512(const float* states, int64_t K, const float* tile, int64_t a, int64_t b,
                            float* out16) {
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t t = a;
  for (; t + 12 <= b; t += 12) m = tokens_max_avx512<12>(states + t * K, K, tile, m);
  if (t + 8 <= b) m = tokens_max_avx512<8>(states + t * K, K, tile, m), t += 8;
  if (t + 4 <= b) m = tokens_max_avx512<4>(states + t * K, K, tile, m), t += 4;
  if (t + 2 <= b) m = tokens_max_avx512<2>(states + t * K, K, tile, m), t += 2;
  if (t < b) m = tokens_max_avx512<1>(states + t * K, K, tile, m);
  _mm512_storeu_ps(out16, m);
}
#endif

inline void tile_max_scalar(const float* states, int64_t K, const float* tile, int64_t a, int64_t b,
                            float* out16) {
  std::fill(out16, out16 + kTile, -std::numeric_limits<float>::infinity());
  for (int64_t t = a; t < b; ++t) {
    float acc[kTile] = {};
    for (int64_t k = 0; k < K; ++k)
      for (int j = 0; j < kTile; ++j) acc[j] += states[t * K + k] * tile[k * kTile + j];
    for (int j = 0; j < kTile; ++j) out16[j] = std::max(out16[j], acc[j]);
  }
}

// states [T, K]; packed [n_tiles, K, 16]; starts [n_texts + 1] (text i owns rows
// [starts[i], starts[i+1])); out [n_texts, vocab]. A text without rows gets -inf.
inline void splade_max_logits(const float* states, int64_t K, const float* packed, int64_t vocab,
                              const int64_t* starts, int64_t n_texts, float* out, int n_threads) {
  const int64_t n_tiles = (vocab + kTile - 1) / kTile;
  auto work = [&](int64_t lo, int64_t hi) {
    float buf[kTile];
    for (int64_t tile = lo; tile < hi; ++tile) {
      const float* w = packed + tile * K * kTile;
      const int64_t v0 = tile * kTile, width = std::min<int64_t>(kTile, vocab - v0);
      for (int64_t i = 0; i < n_texts; ++i) {
#if defined(LSR_SPLADE_AVX512)
        tile_max_avx512(states, K, w, starts[i], starts[i + 1], buf);
#elif defined(LSR_SPLADE_AVX2)
        tile_max_avx2(states, K, w, starts[i], starts[i + 1], buf);
#else
        tile_max_scalar(states, K, w, starts[i], starts[i + 1], buf);
#endif
        std::copy(buf, buf + width, out + i * vocab + v0);
      }
    }
  };
  // Threads take 32 tiles at a time from a shared counter: on a busy machine a thread that is
  // descheduled does not leave a fixed share of the vocabulary waiting behind it.
  constexpr int64_t kGrab = 32;
  std::atomic<int64_t> next{0};
  auto worker = [&] {
    for (int64_t lo; (lo = next.fetch_add(kGrab)) < n_tiles;) work(lo, std::min(n_tiles, lo + kGrab));
  };
  n_threads = (int)std::max<int64_t>(1, std::min<int64_t>(n_threads, (n_tiles + kGrab - 1) / kGrab));
  std::vector<std::thread> pool;
  for (int th = 1; th < n_threads; ++th) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
}

}  // namespace lsr
