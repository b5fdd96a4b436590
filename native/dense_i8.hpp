// Dot products of queries with int8-coded rows (one scale per row): the first pass of an exact
// dense top-k (indexer/dense_index.py re-scores the best rows from the float32 vectors).
// A scan of every row is memory-bound at one query, compute-bound at a batch: int8 codes are a
// quarter of the float32 bytes, and with the queries as int16 (one scale per query, error
// ~1/32767 of the largest coordinate) the dot products are integer multiply-adds (pmaddwd:
// 16 products per instruction on AVX2) that the compiler vectorises without reassociating floats.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>
#ifdef __AVX2__
#include <immintrin.h>
#endif

namespace lsr {

// sum_j c[j] * q[j] over d values, in int32 (d <= 2048: see dense_i8_scores).
inline int32_t dot_i8_i16(const int8_t* c, const int16_t* q, int64_t d) {
  int64_t j = 0;
  int32_t acc = 0;
#ifdef __AVX2__
  __m256i v0 = _mm256_setzero_si256(), v1 = _mm256_setzero_si256();
  for (; j + 32 <= d; j += 32) {
    __m256i c0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(c + j)));
    __m256i c1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(c + j + 16)));
    v0 = _mm256_add_epi32(v0, _mm256_madd_epi16(c0, _mm256_loadu_si256((const __m256i*)(q + j))));
    v1 = _mm256_add_epi32(v1, _mm256_madd_epi16(c1, _mm256_loadu_si256((const __m256i*)(q + j + 16))));
  }
  __m256i v = _mm256_add_epi32(v0, v1);
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
  acc = _mm_cvtsi128_si32(h);
#endif
  for (; j < d; ++j) acc += (int32_t)c[j] * (int32_t)q[j];
  return acc;
}

// out[b * n + i] ~= scales[i] * sum_j queries[b * d + j] * codes[i * d + j]
inline void dense_i8_scores(const int8_t* codes, const float* scales, int64_t n, int64_t d,
                            const float* queries, int64_t nq, float* out) {
  std::vector<int16_t> q16(nq * d);
  std::vector<float> q_scale(nq);
  for (int64_t b = 0; b < nq; ++b) {
    const float* q = queries + b * d;
    float m = 0.0f;
    for (int64_t j = 0; j < d; ++j) m = std::max(m, std::fabs(q[j]));
    q_scale[b] = m > 0.0f ? m / 32767.0f : 1.0f;
    for (int64_t j = 0; j < d; ++j) q16[b * d + j] = (int16_t)std::lrint(q[j] / q_scale[b]);
  }
  // |code| <= 127 and |q16| <= 32767: a product is < 2^22, and d <= 256 products per int32 lane
  // of 8 keep the sum below 2^31 up to d = 2048; longer rows are summed in blocks of 2048.
  constexpr int64_t kBlock = 2048;
  for (int64_t i = 0; i < n; ++i) {
    const int8_t* c = codes + i * d;
    for (int64_t b = 0; b < nq; ++b) {
      const int16_t* q = q16.data() + b * d;
      float s = 0.0f;
      for (int64_t j0 = 0; j0 < d; j0 += kBlock)
        s += (float)dot_i8_i16(c + j0, q + j0, std::min(kBlock, d - j0));
      out[b * n + i] = s * q_scale[b] * scales[i];
    }
  }
}

}  // namespace lsr
