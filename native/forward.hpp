// The two ways a Seismic index stores its forward index (indexer/seismic/forward.py), behind one
// interface for the query kernel: score a document against the dense query, request its cache
// lines ahead of time.
#pragma once
#include <cstring>
#include <vector>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "common.hpp"

namespace lsr {

// Every cache line of [begin, end) (line-aligned, so the last one is not missed).
template <class T>
inline void prefetch_lines(const T* begin, const T* end) {
  auto c = reinterpret_cast<uintptr_t>(begin) & ~uintptr_t(63);
  for (auto e = reinterpret_cast<uintptr_t>(end); c < e; c += 64)
    prefetch_read(reinterpret_cast<const void*>(c));
}

// A record's high parts, decoded (decode_high).
struct ForwardScratch {
  std::vector<uint8_t> high;
};

// forward_layout "arrays": entry pointers, term ids and values in three arrays.
template <class TermT, class ValT>
struct PlainForward {
  const int64_t* ptr = nullptr;
  const TermT* terms = nullptr;
  const ValT* vals = nullptr;

  static int64_t q_size(int64_t dim) { return dim; }
  void prefetch_entry(int32_t d) const { prefetch_read(ptr + d); }
  void prefetch(int32_t d) const {
    prefetch_lines(terms + ptr[d], terms + ptr[d + 1]);
    prefetch_lines(vals + ptr[d], vals + ptr[d + 1]);
  }
  float score(const float* q, int32_t d, ForwardScratch&) const {
    int64_t f0 = ptr[d];
    return score_doc(q, terms + f0, vals + f0, ptr[d + 1] - f0);
  }
};

#if defined(__AVX512VBMI2__) && defined(__AVX512BW__)
// High parts of a record's entries from its unary bits u (ubytes bytes): entry k's is the
// number of zeros before its one. vpcompressb packs the positions of a word's ones; minus
// their rank, plus the zeros of the words before, they are the high parts (mod 256, exact in
// an intact record, where every high part is < 256). Writes up to 64 bytes past n; stops at
// ubytes, so a damaged record leaves garbage high parts but reads nothing outside fwd_rec.
inline void decode_high(const uint8_t* u, int64_t n, int64_t ubytes, uint8_t* high) {
  alignas(64) static const uint8_t kIota[64] = {
      0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
      22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43,
      44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63};
  const __m512i iota = _mm512_load_si512(kIota);
  int64_t k = 0;
  uint32_t zeros = 0;
  for (int64_t b = 0; k < n && b < ubytes; b += 8) {
    uint64_t w;
    std::memcpy(&w, u + b, 8);  // past the unary bits: the next record, or RECORD_PAD
    __m512i pos = _mm512_maskz_compress_epi8(w, iota);
    __m512i h = _mm512_add_epi8(_mm512_sub_epi8(pos, iota), _mm512_set1_epi8(char(zeros)));
    _mm512_storeu_si512(high + k, h);
    int c = __builtin_popcountll(w);
    k += c;
    zeros += 64 - c;
  }
}
#else
// Same, a byte at a time: kHighLut[b] holds, for the r-th one of byte b, its position minus r
// (in byte r), to which the zeros of the bytes before are added lane by lane (no lane carries
// in an intact record, where every high part is < 256).
struct HighLut {
  uint64_t t[256];
  constexpr HighLut() : t() {
    for (int b = 0; b < 256; ++b) {
      uint64_t v = 0;
      int r = 0;
      for (int bit = 0; bit < 8; ++bit)
        if ((b >> bit) & 1) v |= uint64_t(bit - r) << (8 * r++);
      t[b] = v;
    }
  }
};
inline constexpr HighLut kHighLut{};
inline void decode_high(const uint8_t* u, int64_t n, int64_t ubytes, uint8_t* high) {
  int64_t k = 0;
  uint64_t zeros = 0;
  for (int64_t b = 0; k < n && b < ubytes; ++b) {
    uint64_t v = kHighLut.t[u[b]] + (zeros & 0xFF) * 0x0101010101010101ull;
    std::memcpy(high + k, &v, 8);
    int c = __builtin_popcount(u[b]);
    k += c;
    zeros += 8 - c;
  }
}
#endif

// forward_layout "records": one byte record a document, [values | low bytes | unary high
// parts | padding] (forward.py), starting at a multiple of the value size. The kernel sizes
// the dense query for any u16 term (q_size), so that even a damaged record's term ids stay
// inside it.
template <class ValT>
struct RecordForward {
  const int64_t* off = nullptr;
  const uint8_t* rec = nullptr;
  int64_t zeros = 0;  // Z = ((dim - 1) >> 8) + 1

  static int64_t q_size(int64_t) { return 65536; }
  void prefetch_entry(int32_t d) const { prefetch_read(off + d); }
  void prefetch(int32_t d) const { prefetch_lines(rec + off[d], rec + off[d + 1]); }

  // forward.record_entries: the entry count of a record from its size.
  int64_t entries(int32_t d) const {
    return ((off[d + 1] - off[d]) * 8 - zeros) / (8 * (1 + int64_t(sizeof(ValT))) + 1);
  }

  float score(const float* q, int32_t d, ForwardScratch& s) const {
    const int64_t n = entries(d), ubytes = (n + zeros + 7) >> 3;
    if (int64_t(s.high.size()) < n + 64) s.high.resize(n + 64);
    const ValT* vals = reinterpret_cast<const ValT*>(rec + off[d]);
    const uint8_t* low = rec + off[d] + n * int64_t(sizeof(ValT));
    decode_high(low + n, n, ubytes, s.high.data());
    return score_terms(q, SplitTerms{low, s.high.data()}, vals, n);
  }
};

}  // namespace lsr
