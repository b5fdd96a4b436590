// Shared pieces of the query kernels: top-k heap, f16 conversion, a visited bitset and the
// 8-lane document scorer. Everything here defines the exact floating-point order that the
// Numba reference (indexer/seismic/search_numba.py) reproduces bit for bit.
#pragma once
#include <algorithm>
#include <atomic>
#include <limits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>
#if defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

namespace lsr {

struct Hit {
  float score;
  int32_t doc;
};

// Strict total order: higher score first, then smaller doc id. Results are the top-k of the
// evaluated documents under this order, whatever the heap's internal layout.
inline bool better(const Hit& a, const Hit& b) {
  return a.score > b.score || (a.score == b.score && a.doc < b.doc);
}

// Min-heap of the k best hits seen so far (root = worst kept hit).
class TopK {
 public:
  explicit TopK(int k) : k_(k) { h_.reserve(k); }
  bool full() const { return (int)h_.size() == k_; }
  float threshold() const { return h_[0].score; }  // valid only when full()
  const Hit& top() const { return h_[0]; }          // the worst kept hit; valid when non-empty
  const std::vector<Hit>& hits() const { return h_; }  // in heap order
  void push(Hit x) {
    if ((int)h_.size() < k_) {
      h_.push_back(x);
      sift_up(h_.size() - 1);
    } else if (better(x, h_[0])) {
      h_[0] = x;
      sift_down(0);
    }
  }
  // Sorted best-first into the output arrays; returns the number written.
  int drain(int32_t* ids, float* scores) {
    std::sort(h_.begin(), h_.end(), better);
    int n = (int)h_.size();
    for (int i = 0; i < n; ++i) {
      ids[i] = h_[i].doc;
      scores[i] = h_[i].score;
    }
    h_.clear();
    return n;
  }

 private:
  void sift_up(size_t i) {
    while (i > 0) {
      size_t p = (i - 1) / 2;
      if (!better(h_[p], h_[i])) break;
      std::swap(h_[p], h_[i]);
      i = p;
    }
  }
  void sift_down(size_t i) {
    size_t n = h_.size();
    for (;;) {
      size_t l = 2 * i + 1, r = l + 1, w = i;
      if (l < n && better(h_[w], h_[l])) w = l;
      if (r < n && better(h_[w], h_[r])) w = r;
      if (w == i) return;
      std::swap(h_[w], h_[i]);
      i = w;
    }
  }
  int k_;
  std::vector<Hit> h_;
};

inline float half_to_float(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) { man <<= 1; --exp; }
      bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000 | (man << 13);
  } else {
    bits = sign | ((exp - 15 + 127) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

// A read prefetch that the optimiser cannot delete. GCC (12, -O2 and up) treats a loop whose body
// is nothing but __builtin_prefetch calls as side-effect free and, under C++'s forward-progress
// rule (-ffinite-loops), removes it once it sits in another such loop: the Seismic kernel of
// f822992 shipped without a single prefetch instruction (1.65-1.9x slower than with them at 100k
// documents, 2.4-2.9x at 300k). The empty asm statement makes every iteration observable and
// emits no instruction.
inline void prefetch_read(const void* p) {
  __builtin_prefetch(p);
#if defined(__GNUC__)
  asm volatile("" : : "r"(p));
#endif
}

struct Half { uint16_t bits; };  // storage type of float16 forward values
inline float to_float(float v) { return v; }
inline float to_float(Half v) { return half_to_float(v.bits); }

// Lane j accumulates the products of elements i with i % 8 == j; lanes are then summed as a
// fixed tree. Same order with or without AVX2.
inline float reduce8(const float* l) {
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

// How score_doc fills its eight lanes of query weight x document value (all three give the
// same floats: same lanes, multiply then add, no FMA):
// - kScalar: one term at a time, eight scalar accumulators (no AVX2 in the build);
// - kGather: the eight query weights by one AVX2 gather (vgatherdps), the eight values by one
//   vcvtph2ps. On Intel cores ~1.6x faster per term than scalar (Xeon with AVX-512);
// - kInsert: the eight weights by scalar loads inserted into one vector, the values and the
//   products as with kGather. On AMD Zen cores vgatherdps is microcoded (measured 1.01-1.22x
//   the scalar time), but the scalar path spends one conversion, multiply and add per term.
// Chosen once from the CPU vendor; set_scorer() (bindings) switches it for A/B measurements
// and for the test that every mode gives the same floats.
enum Scorer : int { kScalar = 0, kGather = 1, kInsert = 2 };
inline Scorer detect_scorer() {
#if defined(__AVX2__) && defined(__F16C__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();  // this runs as a static initialiser, possibly before libgcc's own
  return __builtin_cpu_is("intel") ? kGather : kInsert;
#else
  return kScalar;
#endif
}
inline Scorer g_scorer = detect_scorer();

// A document's term ids for score_doc: plain (a u16 or u32 array) or split in a forward
// record's low bytes and decoded high parts (forward.hpp), which become u16 ids as they load.
template <class TermT>
struct PlainTerms {
  const TermT* t;
  int64_t operator[](int64_t i) const { return t[i]; }
#if defined(__AVX2__) && defined(__F16C__)
  __m256i load8(int64_t i) const {
    if constexpr (sizeof(TermT) == 2)
      return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t + i)));
    else
      return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t + i));
  }
#endif
};
struct SplitTerms {
  const uint8_t* low;
  const uint8_t* high;
  int64_t operator[](int64_t i) const { return low[i] | (int64_t(high[i]) << 8); }
#if defined(__AVX2__) && defined(__F16C__)
  __m256i load8(int64_t i) const {  // eight (high << 8 | low) u16 ids, widened
    __m128i lo = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(low + i));
    __m128i hi = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(high + i));
    return _mm256_cvtepu16_epi32(_mm_unpacklo_epi8(lo, hi));
  }
#endif
};

#if defined(__AVX2__) && defined(__F16C__)
template <class ValT>
inline __m256 load_vals8(const ValT* v) {
  if constexpr (std::is_same_v<ValT, Half>)
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v)));
  else
    return _mm256_loadu_ps(reinterpret_cast<const float*>(v));
}
#endif

template <class Terms, class ValT>
inline float score_terms(const float* q, Terms t, const ValT* v, int64_t n) {
  // Eight independent accumulators hide the add latency. The gather path keeps the same lanes
  // (lane j: elements i % 8 == j, multiply then add, no FMA), so both give the same floats.
  alignas(32) float lanes[8];
  int64_t i = 0;
#if defined(__AVX2__) && defined(__F16C__)
  if (g_scorer == kGather) {
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8)
      acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_i32gather_ps(q, t.load8(i), 4), load_vals8(v + i)));
    _mm256_store_ps(lanes, acc);
    for (int j = 0; i < n; ++i, ++j) lanes[j] += q[t[i]] * to_float(v[i]);
    return reduce8(lanes);
  }
  if (g_scorer == kInsert) {
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
      __m128 lo = _mm_setr_ps(q[t[i]], q[t[i + 1]], q[t[i + 2]], q[t[i + 3]]);
      __m128 hi = _mm_setr_ps(q[t[i + 4]], q[t[i + 5]], q[t[i + 6]], q[t[i + 7]]);
      acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set_m128(hi, lo), load_vals8(v + i)));
    }
    _mm256_store_ps(lanes, acc);
    for (int j = 0; i < n; ++i, ++j) lanes[j] += q[t[i]] * to_float(v[i]);
    return reduce8(lanes);
  }
#endif
  float l0 = 0, l1 = 0, l2 = 0, l3 = 0, l4 = 0, l5 = 0, l6 = 0, l7 = 0;
  for (; i + 8 <= n; i += 8) {
    l0 += q[t[i]] * to_float(v[i]);
    l1 += q[t[i + 1]] * to_float(v[i + 1]);
    l2 += q[t[i + 2]] * to_float(v[i + 2]);
    l3 += q[t[i + 3]] * to_float(v[i + 3]);
    l4 += q[t[i + 4]] * to_float(v[i + 4]);
    l5 += q[t[i + 5]] * to_float(v[i + 5]);
    l6 += q[t[i + 6]] * to_float(v[i + 6]);
    l7 += q[t[i + 7]] * to_float(v[i + 7]);
  }
  lanes[0] = l0, lanes[1] = l1, lanes[2] = l2, lanes[3] = l3;
  lanes[4] = l4, lanes[5] = l5, lanes[6] = l6, lanes[7] = l7;
  for (int j = 0; i < n; ++i, ++j) lanes[j] += q[t[i]] * to_float(v[i]);
  return reduce8(lanes);
}

template <class TermT, class ValT>
inline float score_doc(const float* q, const TermT* t, const ValT* v, int64_t n) {
  return score_terms(q, PlainTerms<TermT>{t}, v, n);
}

// Bitset of visited documents, cleared word by word after each query.
class Visited {
 public:
  explicit Visited(int64_t n) : bits_((n + 63) / 64, 0) {}
  bool test(int64_t d) const { return (bits_[d >> 6] >> (d & 63)) & 1; }
  bool test_and_set(int64_t d) {
    uint64_t& w = bits_[d >> 6];
    uint64_t m = uint64_t(1) << (d & 63);
    if (w & m) return true;
    if (w == 0) dirty_.push_back(d >> 6);
    w |= m;
    return false;
  }
  void clear() {
    for (int64_t w : dirty_) bits_[w] = 0;
    dirty_.clear();
  }

 private:
  std::vector<uint64_t> bits_;
  std::vector<int64_t> dirty_;
};

// Per-call scratch memory, recycled across calls and threads (a search may run concurrently
// from many Python threads once the GIL is released).
template <class Scratch>
class ScratchPool {
 public:
  template <class... Args>
  std::unique_ptr<Scratch> acquire(Args&&... args) {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (!free_.empty()) {
        auto s = std::move(free_.back());
        free_.pop_back();
        return s;
      }
    }
    return std::make_unique<Scratch>(std::forward<Args>(args)...);
  }
  void release(std::unique_ptr<Scratch> s) {
    std::lock_guard<std::mutex> g(mu_);
    free_.push_back(std::move(s));
  }

 private:
  std::mutex mu_;
  std::vector<std::unique_ptr<Scratch>> free_;
};

// Runs `one(scratch, i, ids, scores) -> hits` for every query i over n_threads threads (work
// stealing through an atomic counter). Outputs are [n_queries, k] row-major; rows with fewer
// than k hits are padded with -1 / -inf.
template <class Scratch, class Acquire, class SearchOne>
void search_all(ScratchPool<Scratch>& pool, Acquire acquire, int64_t n_queries, int k,
                int n_threads, int32_t* out_ids, float* out_scores, SearchOne one) {
  n_threads = std::max(1, std::min<int>(n_threads, (int)n_queries));
  std::atomic<int64_t> next{0};
  auto work = [&]() {
    auto s = acquire();
    for (int64_t i; (i = next.fetch_add(1)) < n_queries;) {
      int32_t* ids = out_ids + i * k;
      float* sc = out_scores + i * k;
      for (int j = one(*s, i, ids, sc); j < k; ++j) {
        ids[j] = -1;
        sc[j] = -std::numeric_limits<float>::infinity();
      }
    }
    pool.release(std::move(s));
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < n_threads; ++t) threads.emplace_back(work);
  work();
  for (auto& th : threads) th.join();
}

}  // namespace lsr
