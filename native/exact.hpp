// Exact top-k by term-at-a-time accumulation over an inverted index (CSC of the documents).
// The Numba kernel in indexer/exact.py is the reference: same order, identical results.
#pragma once
#include <atomic>
#include <limits>
#include <thread>

#include "common.hpp"

namespace lsr {

struct ExactArrays {
  int64_t n_docs = 0, dim = 0;
  const int64_t* col_ptr;  // [dim + 1]
  const int32_t* col_docs;
  const float* col_vals;
};

struct ExactScratch {
  explicit ExactScratch(int64_t n_docs) : acc(n_docs, 0.0f), seen(n_docs) {}
  std::vector<float> acc;
  Visited seen;
  std::vector<int32_t> touched;
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
    n_threads = std::max(1, std::min<int>(n_threads, (int)n_queries));
    std::atomic<int64_t> next{0};
    auto work = [&]() {
      auto s = pool_.acquire(a_.n_docs);
      for (int64_t i; (i = next.fetch_add(1)) < n_queries;) {
        int32_t* ids = out_ids + i * k;
        float* sc = out_scores + i * k;
        int n = search_with(*s, q_terms + q_ptr[i], q_vals + q_ptr[i], q_ptr[i + 1] - q_ptr[i], k,
                            ids, sc);
        for (int j = n; j < k; ++j) {
          ids[j] = -1;
          sc[j] = -std::numeric_limits<float>::infinity();
        }
      }
      pool_.release(std::move(s));
    };
    std::vector<std::thread> threads;
    for (int t = 1; t < n_threads; ++t) threads.emplace_back(work);
    work();
    for (auto& th : threads) th.join();
  }

 private:
  int search_with(ExactScratch& s, const int32_t* q_terms, const float* q_vals, int64_t nq, int k,
                  int32_t* out_ids, float* out_scores) {
    float* acc = s.acc.data();
    for (int64_t j = 0; j < nq; ++j) {
      int64_t t = q_terms[j];
      float qv = q_vals[j];
      const int32_t* d = a_.col_docs + a_.col_ptr[t];
      const float* v = a_.col_vals + a_.col_ptr[t];
      int64_t n = a_.col_ptr[t + 1] - a_.col_ptr[t];
      for (int64_t i = 0; i < n; ++i) {
        if (!s.seen.test_and_set(d[i])) s.touched.push_back(d[i]);
        acc[d[i]] += qv * v[i];
      }
    }
    TopK heap(k);
    for (int32_t d : s.touched) {
      heap.push(Hit{acc[d], d});
      acc[d] = 0.0f;
    }
    s.touched.clear();
    s.seen.clear();
    return heap.drain(out_ids, out_scores);
  }

  ExactArrays a_;
  ScratchPool<ExactScratch> pool_;
};

}  // namespace lsr
