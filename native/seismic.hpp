// Seismic query kernel (Bruch et al., SIGIR 2024, Algorithm 2), over the arrays that
// indexer/seismic builds. The Numba kernel in indexer/seismic/search_numba.py is the reference:
// same visiting order, same float32 arithmetic, identical results.
#pragma once
#include <cstring>
#include <numeric>
#ifdef __BMI2__
#include <immintrin.h>
#endif

#include "common.hpp"
#include "forward.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "packed summary keys are little-endian");

namespace lsr {

// Bits of a local block id in a list of nb blocks: ceil(log2 nb) (summaries.block_bits).
inline int block_bits(int64_t nb) {
  int bb = 0;
  while ((int64_t(1) << bb) < nb) ++bb;
  return bb;
}

template <class Fwd, class DocT = int32_t>
struct SeismicArrays {
  int64_t n_docs = 0, dim = 0;
  Fwd fwd;  // forward index (forward.hpp: PlainForward or RecordForward)
  // posting lists split into blocks
  const int64_t* list_block_ptr;
  const int64_t* block_doc_ptr;
  const DocT* block_docs;  // u16 in an index of at most 65,536 documents, else i32
  const float* block_levels;  // kLevels dequantisation levels a block, ascending
  // transposed 2-bit summaries, packed per list (indexer/seismic/summaries.py, summary layout
  // 5): entries sorted by (term, block) in buckets of term >> (list_shift & 0x1F); plain lists:
  // a u16 directory word (two in a list of >= 65536 entries) per kGroup buckets, the buckets'
  // sizes in unary, then fields (((low << bb) | block) << kCodeBits) | code (bucket_entries);
  // grouped lists (list_shift & 0x80): a directory word a bucket, byte-aligned buckets of
  // records, a term's low part then its entries (see grouped_dots)
  const int64_t* list_entry_ptr;
  const uint8_t* list_shift;
  const int64_t* list_dir_ptr;
  const uint16_t* summary_dir;
  const int64_t* list_key_ptr;
  const uint8_t* entry_key;
  int64_t max_blocks_per_list = 0;
  // κ-NN graph (indexer/seismic/knn.py): knn_k neighbour ids a document, or none (knn_k = 0)
  const uint32_t* knn = nullptr;
  int64_t knn_k = 0;
};

struct SeismicScratch {
  SeismicScratch(int64_t q_size, int64_t n_docs, int64_t max_blocks)
      : q_dense(q_size, 0.0f), visited(n_docs), dots(max_blocks), order(max_blocks) {}
  std::vector<float> q_dense;
  ForwardScratch fwd;
  Visited visited;
  std::vector<float> dots;
  std::vector<int32_t> order;
  std::vector<int32_t> cut;
  std::vector<int32_t> tops;
  std::vector<int32_t> unseen;  // a block's documents not scored yet
};

template <class Fwd, class DocT = int32_t>
class SeismicKernel {
 public:
  explicit SeismicKernel(const SeismicArrays<Fwd, DocT>& a) : a_(a) {}

  // q_terms ascending and unique, q_vals finite. Returns the number of hits written (<= k).
  // knn_expand: stored neighbours of each top hit scored after the inverted-index phase (0: none).
  int search(const int32_t* q_terms, const float* q_vals, int64_t nq, int k, int query_cut,
             float heap_factor, int knn_expand, int32_t* out_ids, float* out_scores) {
    auto s = pool_.acquire(Fwd::q_size(a_.dim), a_.n_docs, a_.max_blocks_per_list);
    int n = search_with(*s, q_terms, q_vals, nq, k, query_cut, heap_factor, knn_expand, out_ids,
                        out_scores);
    pool_.release(std::move(s));
    return n;
  }

  // Queries as CSR; outputs are [n_queries, k] row-major, padded with -1 / -inf.
  void search_batch(const int64_t* q_ptr, const int32_t* q_terms, const float* q_vals,
                    int64_t n_queries, int k, int query_cut, float heap_factor, int knn_expand,
                    int n_threads, int32_t* out_ids, float* out_scores) {
    search_all(pool_, [&] { return pool_.acquire(Fwd::q_size(a_.dim), a_.n_docs, a_.max_blocks_per_list); },
               n_queries, k, n_threads, out_ids, out_scores,
               [&](SeismicScratch& s, int64_t i, int32_t* ids, float* sc) {
                 return search_with(s, q_terms + q_ptr[i], q_vals + q_ptr[i],
                                    q_ptr[i + 1] - q_ptr[i], k, query_cut, heap_factor, knn_expand,
                                    ids, sc);
               });
  }

 private:
  int search_with(SeismicScratch& s, const int32_t* q_terms, const float* q_vals, int64_t nq,
                  int k, int query_cut, float heap_factor, int knn_expand, int32_t* out_ids,
                  float* out_scores) {
    float* q = s.q_dense.data();
    for (int64_t j = 0; j < nq; ++j) q[q_terms[j]] = q_vals[j];

    // lists to visit: the query_cut largest query terms, ties by term id
    s.cut.resize(nq);
    std::iota(s.cut.begin(), s.cut.end(), 0);
    std::stable_sort(s.cut.begin(), s.cut.end(),
                     [&](int32_t x, int32_t y) { return q_vals[x] > q_vals[y]; });
    int64_t n_cut = std::min<int64_t>(query_cut, nq);

    TopK heap(k);
    if (n_cut > 1) prefetch_summary_dir(q_terms[s.cut[1]], q_terms, nq);
    for (int64_t li = 0; li < n_cut; ++li) {
      int64_t t = q_terms[s.cut[li]];
      int64_t b0 = a_.list_block_ptr[t], nb = a_.list_block_ptr[t + 1] - b0;
      if (nb == 0) continue;
      block_dots(t, b0, nb, q_terms, q_vals, nq, s.dots.data());
      // The summaries of the next lists load while this list's documents are scored: the
      // directory words of the query's terms two lists ahead, the buckets they point to one
      // list ahead (its directory was requested a list ago).
      if (li + 2 < n_cut) prefetch_summary_dir(q_terms[s.cut[li + 2]], q_terms, nq);
      if (li + 1 < n_cut) prefetch_summary_buckets(q_terms[s.cut[li + 1]], q_terms, nq);
      int32_t* order = s.order.data();
      std::iota(order, order + nb, 0);
      if (li == 0)  // the first list is visited best block first, to fill the heap early
        std::stable_sort(order, order + nb,
                         [&](int32_t x, int32_t y) { return s.dots[x] > s.dots[y]; });
      for (int64_t i = 0; i < nb; ++i) {
        int32_t b = order[i];
        if (heap.full() && s.dots[b] < heap_factor * heap.threshold()) continue;
        const DocT* d = a_.block_docs + a_.block_doc_ptr[b0 + b];
        const DocT* d_end = a_.block_docs + a_.block_doc_ptr[b0 + b + 1];
        // Scoring is bound by forward-index cache misses (perf: the first load of a document's
        // terms is the hottest instruction), so every cache line of a document is requested
        // kPrefetchDocs documents before it is scored, and the misses overlap. Requesting the
        // whole block up front (as Seismic does) measured 1.25-1.36x faster than each
        // document's first line on the Intel Xeon, but the window is 1.11-1.25x faster again on
        // the AMD EPYC at 100k documents (synthetic, -flat; SciFact 0.97-1.01, within noise): a
        // block's lines outrun the L1 and the miss queue (prefetch_read: a plain
        // __builtin_prefetch loop here is deleted by GCC, common.hpp).
        // Each document's forward pointer is requested as the block's ids are read: the window's
        // own prefetches need it, and at 1M documents (8 MB of offsets, read at random) that
        // load was the hottest instruction of the block loop (perf, synthetic-1m); requested
        // here, queries took 0.89-0.92x the time at 100k and 1M (SciFact: within noise).
        int64_t m = 0;
        if (s.unseen.size() < size_t(d_end - d)) s.unseen.resize(d_end - d);
        int32_t* unseen = s.unseen.data();
        for (const DocT* p = d; p < d_end; ++p)
          if (!s.visited.test_and_set(*p)) {
            a_.fwd.prefetch_entry(*p);
            unseen[m++] = *p;
          }
        score_all(s, q, unseen, m, heap);
      }
    }
    int64_t kx = std::min<int64_t>(knn_expand, a_.knn_k);
    if (kx > 0) expand(s, q, heap, kx);
    for (int64_t j = 0; j < nq; ++j) q[q_terms[j]] = 0.0f;
    s.visited.clear();
    return heap.drain(out_ids, out_scores);
  }

  // κ-NN refinement (search_numba.expand): score the first kx stored neighbours of every hit in
  // the heap. The result is the top k of all documents scored, whatever the visiting order.
  void expand(SeismicScratch& s, const float* q, TopK& heap, int64_t kx) {
    s.tops.clear();
    for (const Hit& h : heap.hits()) s.tops.push_back(h.doc);
    s.unseen.clear();
    for (int32_t t : s.tops)
      for (const uint32_t* p = a_.knn + int64_t(t) * a_.knn_k, *e = p + kx; p < e; ++p)
        if (!s.visited.test_and_set(int32_t(*p))) {
          a_.fwd.prefetch_entry(int32_t(*p));
          s.unseen.push_back(int32_t(*p));
        }
    score_all(s, q, s.unseen.data(), int64_t(s.unseen.size()), heap);
  }

  // Scores docs[0..m) in order into the heap, with the prefetch window described above.
  // (docs may be s.unseen itself: only s.fwd is written here.)
  void score_all(SeismicScratch& s, const float* q, const int32_t* docs, int64_t m, TopK& heap) const {
    int64_t w = std::min<int64_t>(kPrefetchDocs, m);
    for (int64_t j = 0; j < w; ++j) a_.fwd.prefetch(docs[j]);
    for (int64_t j = 0; j < m; ++j) {
      if (j + w < m) a_.fwd.prefetch(docs[j + w]);
      int32_t doc = docs[j];
      heap.push(Hit{a_.fwd.score(q, doc, s.fwd), doc});
    }
  }

  static constexpr int64_t kPrefetchDocs = 8;  // measured 4 / 8 / 16 on synthetic-100k(-flat)
  static constexpr int kCodeBits = 2, kLevels = 1 << kCodeBits;
  static constexpr int64_t kWide = 65536;  // summaries.dir_words: lists this long use 2 words
  static constexpr int64_t kGroup = 64;  // summaries._GROUP: buckets a plain list's directory word covers

  // Directory word h of a list (wide: low and high u16 halves).
  static int64_t dir_at(const uint16_t* dir, int64_t h, bool wide) {
    return wide ? (int64_t(dir[2 * h]) | (int64_t(dir[2 * h + 1]) << 16)) : int64_t(dir[h]);
  }

  // Shift byte of list t: the bucket shift in the low bits, kGrouped for a grouped list.
  static constexpr uint8_t kGrouped = 0x80, kShiftMask = 0x1F;

  // Whether list t's directory takes two words a bucket (summaries.list_wide: plain lists by
  // entries, grouped lists by key bytes, the unit of their directory).
  bool wide_dir(int64_t t, int64_t e) const {
    if (a_.list_shift[t] & kGrouped) return a_.list_key_ptr[t + 1] - a_.list_key_ptr[t] >= kWide;
    return e >= kWide;
  }

  // Directory word of list t that every query term's lookup reads first (a plain list's: of
  // the term's group of buckets).
  void prefetch_summary_dir(int64_t t, const int32_t* q_terms, int64_t nq) const {
    int64_t e = a_.list_entry_ptr[t + 1] - a_.list_entry_ptr[t];
    if (e == 0) return;
    const int s = a_.list_shift[t] & kShiftMask;
    const int64_t words = wide_dir(t, e) ? 2 : 1, per = (a_.list_shift[t] & kGrouped) ? 1 : kGroup;
    const uint16_t* dir = a_.summary_dir + a_.list_dir_ptr[t];
    for (int64_t j = 0; j < nq; ++j) prefetch_read(dir + words * ((q_terms[j] >> s) / per));
  }

  // What every query term's lookup in list t reads next: a grouped list's bucket; a plain
  // list's unary sizes of the term's group and its keys where the group's entries, spread
  // evenly over its buckets, would put the term's bucket.
  void prefetch_summary_buckets(int64_t t, const int32_t* q_terms, int64_t nq) const {
    int64_t e = a_.list_entry_ptr[t + 1] - a_.list_entry_ptr[t];
    if (e == 0) return;
    const int s = a_.list_shift[t] & kShiftMask;
    const bool wide = wide_dir(t, e);
    const uint16_t* dir = a_.summary_dir + a_.list_dir_ptr[t];
    const uint8_t* keys = a_.entry_key + a_.list_key_ptr[t];
    if (a_.list_shift[t] & kGrouped) {  // its directory counts bytes
      for (int64_t j = 0; j < nq; ++j) prefetch_read(keys + dir_at(dir, q_terms[j] >> s, wide));
      return;
    }
    const int64_t w = s + block_bits(a_.list_block_ptr[t + 1] - a_.list_block_ptr[t]) + kCodeBits;
    const uint8_t* k1 = keys + unary_bytes(t);
    for (int64_t j = 0; j < nq; ++j) {
      int64_t h = q_terms[j] >> s, g = h / kGroup;
      int64_t base = dir_at(dir, g, wide), next = dir_at(dir, g + 1, wide);
      prefetch_read(keys + ((base + kGroup * g) >> 3));
      prefetch_read(k1 + (((base + (next - base) * (h - kGroup * g) / kGroup) * w) >> 3));
    }
  }

  // dots[b] = sum over the query terms (ascending) that block b's summary holds of
  // q_val * levels_b[code].
  void block_dots(int64_t t, int64_t b0, int64_t nb, const int32_t* q_terms, const float* q_vals,
                  int64_t nq, float* dots) const {
    std::fill(dots, dots + nb, 0.0f);
    int64_t e = a_.list_entry_ptr[t + 1] - a_.list_entry_ptr[t];
    if (e == 0) return;
    const bool wide = wide_dir(t, e);
    if (a_.list_shift[t] & kGrouped) {
      if (wide) grouped_dots<true>(t, b0, nb, q_terms, q_vals, nq, dots);
      else grouped_dots<false>(t, b0, nb, q_terms, q_vals, nq, dots);
    } else {
      if (wide) block_dots_list<true>(t, b0, nb, q_terms, q_vals, nq, dots);
      else block_dots_list<false>(t, b0, nb, q_terms, q_vals, nq, dots);
    }
  }

  // 8 bytes from bit offset `bit` of a list's keys, shifted down to it (entry_key has 8 bytes
  // of padding, so the load never leaves the array).
  static uint64_t bits_at(const uint8_t* keys, int64_t bit) {
    uint64_t x;
    std::memcpy(&x, keys + (bit >> 3), 8);
    return x >> (bit & 7);
  }

  // block_dots over a grouped list (summaries.encode_grouped, search_numba._grouped_dots):
  // per query term, the records of its bucket are scanned (a record's low part and first entry
  // read as one field) until its own, whose entries are added, or a larger low part.
  template <bool kWideDir>
  void grouped_dots(int64_t t, int64_t b0, int64_t nb, const int32_t* q_terms,
                    const float* q_vals, int64_t nq, float* dots) const {
    const float* levels = a_.block_levels + b0 * kLevels;
    const int s = a_.list_shift[t] & kShiftMask, ew = block_bits(nb) + kCodeBits + 1, hw = s + ew;
    const uint64_t hmask = (uint64_t(1) << hw) - 1, emask = (uint64_t(1) << ew) - 1;
    const uint32_t lmask = (uint32_t(1) << s) - 1, cmask = (uint32_t(1) << kCodeBits) - 1;
    uint64_t more = 0;
    for (int b = 0; b + ew <= 56; b += ew) more |= uint64_t(1) << b;
    const uint16_t* dir = a_.summary_dir + a_.list_dir_ptr[t];
    const uint8_t* keys = a_.entry_key + a_.list_key_ptr[t];
    for (int64_t j = 0; j < nq; ++j) {
      uint32_t qt = (uint32_t)q_terms[j], lo = qt & lmask;
      int64_t h = qt >> s;
      float qv = q_vals[j];
      int64_t pos = 8 * dir_at(dir, h, kWideDir), end = 8 * dir_at(dir, h + 1, kWideDir);
      while (pos + hw <= end) {  // the zero padding of a bucket's last byte is never a record
        uint64_t f = bits_at(keys, pos) & hmask;
        uint32_t klo = uint32_t(f) & lmask, ent = uint32_t(f >> s);
        if (klo > lo) break;
        pos += hw;
        if (klo == lo) {
          for (;;) {
            uint32_t b = ent >> (kCodeBits + 1);
            dots[b] += qv * levels[b * kLevels + ((ent >> 1) & cmask)];
            if (!(ent & 1)) break;
            ent = uint32_t(bits_at(keys, pos) & emask);
            pos += ew;
          }
          break;
        }
        if (ent & 1) pos = skip_entries(keys, pos, ew, more);  // another term's: skip them
      }
    }
  }

  // Bit offset just past a run of grouped entries starting at `pos` whose last has more = 0:
  // the more bits of up to 64 / ew entries are tested at once (`more` has a one at the more
  // bit of every whole entry in 56 bits), not one entry after the other.
  static int64_t skip_entries(const uint8_t* keys, int64_t pos, int ew, uint64_t more) {
    const int64_t window = (56 / ew) * ew;
    for (;;) {
      uint64_t last = ~bits_at(keys, pos) & more;
      if (last) return pos + __builtin_ctzll(last) + ew;
      pos += window;
    }
  }

  // Position of the r-th (from 0) set bit of x, which has more than r.
  static int select_bit(uint64_t x, int r) {
#ifdef __BMI2__
    return __builtin_ctzll(_pdep_u64(uint64_t(1) << r, x));
#else
    int p = 0;
    for (;; p += 8) {  // whole bytes first
      int c = __builtin_popcountll((x >> p) & 0xFF);
      if (c > r) break;
      r -= c;
    }
    uint64_t y = x >> p;
    for (int i = 0; i < r; ++i) y &= y - 1;
    return p + __builtin_ctzll(y);
#endif
  }

  // Entries [i0, i1) of bucket h of a plain list (summaries.bucket_entries): the directory word
  // of h's group counts the entries before it, so the group's unary sizes (a one per entry, a
  // zero ending each bucket) start at bit base + kGroup * group; bucket h starts after
  // h % kGroup of their zeros and runs to the next zero. Read 56 bits at a time.
  template <bool kWideDir>
  static void bucket_entries(const uint16_t* dir, const uint8_t* unary, int64_t h, int64_t& i0,
                             int64_t& i1) {
    constexpr uint64_t kWindow = (uint64_t(1) << 56) - 1;
    const int64_t g = h / kGroup, base = dir_at(dir, g, kWideDir), pos0 = base + kGroup * g;
    int j = int(h - kGroup * g);
    int64_t start = pos0;
    for (int64_t pos = pos0; j > 0; pos += 56) {
      uint64_t z = ~bits_at(unary, pos) & kWindow;
      int nz = __builtin_popcountll(z);
      if (nz >= j) {
        start = pos + select_bit(z, j - 1) + 1;
        break;
      }
      j -= nz;
    }
    int64_t end = start;
    for (;; end += 56) {
      uint64_t z = ~bits_at(unary, end) & kWindow;
      if (z) {
        end += __builtin_ctzll(z);
        break;
      }
    }
    i0 = base + (start - pos0) - (h - kGroup * g);
    i1 = i0 + (end - start);
  }

  template <bool kWideDir>
  void block_dots_list(int64_t t, int64_t b0, int64_t nb, const int32_t* q_terms,
                       const float* q_vals, int64_t nq, float* dots) const {
    const float* levels = a_.block_levels + b0 * kLevels;
    const int s = a_.list_shift[t] & kShiftMask, bb = block_bits(nb), w = s + bb + kCodeBits;
    const uint64_t kmask = (uint64_t(1) << w) - 1;
    const uint32_t lmask = (uint32_t(1) << s) - 1, bmask = (uint32_t(1) << bb) - 1,
                   cmask = (uint32_t(1) << kCodeBits) - 1;
    const int lshift = bb + kCodeBits;
    const uint16_t* dir = a_.summary_dir + a_.list_dir_ptr[t];
    const uint8_t* unary = a_.entry_key + a_.list_key_ptr[t];
    const uint8_t* keys = unary + unary_bytes(t);
    for (int64_t j = 0; j < nq; ++j) {
      uint32_t qt = (uint32_t)q_terms[j], lo = qt & lmask;
      int64_t i, end;
      bucket_entries<kWideDir>(dir, unary, qt >> s, i, end);
      float qv = q_vals[j];
      for (; i < end; ++i) {
        int64_t bit = i * w;
        uint64_t x;
        std::memcpy(&x, keys + (bit >> 3), 8);  // entry_key has 8 bytes of padding
        uint32_t key = uint32_t((x >> (bit & 7)) & kmask), klo = key >> lshift;
        if (klo > lo) break;
        if (klo == lo) {
          uint32_t b = (key >> kCodeBits) & bmask;
          dots[b] += qv * levels[b * kLevels + (key & cmask)];
        }
      }
    }
  }

  // Bytes of plain list t's unary bucket sizes (summaries.unary_bytes), which its keys follow.
  int64_t unary_bytes(int64_t t) const {
    int64_t e = a_.list_entry_ptr[t + 1] - a_.list_entry_ptr[t];
    int64_t n_buckets = ((a_.dim - 1) >> (a_.list_shift[t] & kShiftMask)) + 1;
    return (e + n_buckets + 7) >> 3;
  }

  SeismicArrays<Fwd, DocT> a_;
  ScratchPool<SeismicScratch> pool_;
};

}  // namespace lsr
