// Exact top-k by term-at-a-time accumulation over an inverted index (CSC of the documents).
// The Numba kernel in indexer/exact.py is the reference: same order, identical results.
#pragma once
#include "common.hpp"

namespace lsr {

struct ExactArrays {
  int64_t n_docs = 0, dim = 0;
  const int64_t* col_ptr;  // [dim + 1]
  const int32_t* col_docs;
  const float* col_vals;
};

struct ExactScratch {
  explicit ExactScratch(int64_t n_docs) : acc(n_docs, 0.0f), touched((n_docs + 63) / 64, 0) {}
  std::vector<float> acc;
  std::vector<uint64_t> touched;  // bitset of documents with at least one matching posting
};

class ExactKernel {
 public:
  explicit ExactKernel(const ExactArrays& a) : a_(a) {}

  int search(const int32_t* q_terms, const float* q_vals, int64_t nq, int k, int32_t* out_ids,
             float* out_scores) {
    auto s = pool_.acquire(a_.n_docs);
    int n = search_with(*s, q_terms, q_vals, nq, k, out_ids, out_scores);
    pool_.release(std::move(s));
    return n;
  }

  void search_batch(const int64_t* q_ptr, const int32_t* q_terms, const float* q_vals,
                    int64_t n_queries, int k, int n_threads, int32_t* out_ids, float* out_scores) {
    search_all(pool_, [&] { return pool_.acquire(a_.n_docs); }, n_queries, k, n_threads, out_ids,
               out_scores, [&](ExactScratch& s, int64_t i, int32_t* ids, float* sc) {
                 return search_with(s, q_terms + q_ptr[i], q_vals + q_ptr[i],
                                    q_ptr[i + 1] - q_ptr[i], k, ids, sc);
               });
  }

 private:
  int search_with(ExactScratch& s, const int32_t* q_terms, const float* q_vals, int64_t nq, int k,
                  int32_t* out_ids, float* out_scores) {
    float* acc = s.acc.data();
    uint64_t* touched = s.touched.data();
    // Scatter-add without branches: the touched bitset is set unconditionally per posting.
    for (int64_t j = 0; j < nq; ++j) {
      int64_t t = q_terms[j];
      float qv = q_vals[j];
      const int32_t* d = a_.col_docs + a_.col_ptr[t];
      const float* v = a_.col_vals + a_.col_ptr[t];
      int64_t n = a_.col_ptr[t + 1] - a_.col_ptr[t];
      for (int64_t i = 0; i < n; ++i) {
        int32_t doc = d[i];
        touched[doc >> 6] |= uint64_t(1) << (doc & 63);
        acc[doc] += qv * v[i];
      }
    }
    // Select from the touched documents (in id order), resetting as we go.
    TopK heap(k);
    int64_t n_words = (int64_t)s.touched.size();
    for (int64_t w = 0; w < n_words; ++w) {
      uint64_t bits = touched[w];
      if (!bits) continue;
      touched[w] = 0;
      do {
        int32_t doc = (int32_t)(w * 64 + __builtin_ctzll(bits));
        bits &= bits - 1;
        Hit h{acc[doc], doc};
        acc[doc] = 0.0f;
        if (!heap.full() || better(h, heap.top())) heap.push(h);
      } while (bits);
    }
    return heap.drain(out_ids, out_scores);
  }

  ExactArrays a_;
  ScratchPool<ExactScratch> pool_;
};

}  // namespace lsr
