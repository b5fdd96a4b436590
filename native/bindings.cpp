// Thin nanobind bindings: validate array dtypes, pick the kernel instantiation, release the GIL.
// All algorithmic code lives in seismic.hpp / exact.hpp.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <iterator>
#include <stdexcept>
#include <string>

#include "dense_i8.hpp"
#include "exact.hpp"
#include "seismic.hpp"
#include "splade_head.hpp"

namespace nb = nanobind;
using namespace nb::literals;
using Arr = nb::ndarray<nb::numpy, nb::ro, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

namespace {

const char* const kScorerNames[] = {"scalar", "gather", "insert"};  // by lsr::Scorer

template <class T>
const T* ptr(const Arr& a, const char* name) {
  if (a.dtype() != nb::dtype<T>())
    throw std::invalid_argument(std::string("array '") + name + "' has the wrong dtype");
  return static_cast<const T*>(a.data());
}

bool is_f16(const Arr& a) {
  return a.dtype().code == (uint8_t)nb::dlpack::dtype_code::Float && a.dtype().bits == 16;
}

template <class T>
nb::ndarray<nb::numpy, T> owned(T* data, std::initializer_list<size_t> shape) {
  nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<T*>(p); });
  return nb::ndarray<nb::numpy, T>(data, shape, owner);
}

// Validates a single query in one pass. Returns false when the query is valid but not canonical
// (terms unsorted or repeated): the Python side then sorts and merges it and calls again.
bool canonical_query(const Arr& q_terms, const Arr& q_vals, int64_t dim, const int32_t* t,
                     const float* v) {
  int64_t n = (int64_t)q_terms.shape(0);
  if (n == 0) throw std::invalid_argument("empty query: it has no terms");
  if ((int64_t)q_vals.shape(0) != n)
    throw std::invalid_argument("query has " + std::to_string(n) + " indices but " +
                                std::to_string(q_vals.shape(0)) + " values");
  bool sorted = true;
  for (int64_t i = 0; i < n; ++i) {
    if (t[i] < 0 || t[i] >= dim)
      throw std::invalid_argument("query term ids must be in [0, " + std::to_string(dim) +
                                  "), got " + std::to_string(t[i]));
    if (!std::isfinite(v[i])) throw std::invalid_argument("query values contain NaN or infinity");
    if (i > 0 && t[i] <= t[i - 1]) sorted = false;
  }
  return sorted;
}

// Results of one query as numpy arrays (int64 ids, float32 scores) that own their memory.
nb::tuple hits_to_numpy(const std::vector<int32_t>& ids, const std::vector<float>& sc, int n) {
  auto* out_ids = new int64_t[n];
  auto* out_sc = new float[n];
  for (int i = 0; i < n; ++i) {
    out_ids[i] = ids[i];
    out_sc[i] = sc[i];
  }
  return nb::make_tuple(owned(out_ids, {(size_t)n}), owned(out_sc, {(size_t)n}));
}

// One query through `run(terms, values, n, ids, scores) -> hits` with the GIL released: (int64
// ids, float32 scores), or None when the query must first be sorted/merged by the caller.
template <class Run>
nb::object run_one(const Arr& q_terms, const Arr& q_vals, int64_t dim, int k, Run run) {
  const int32_t* t = ptr<int32_t>(q_terms, "q_terms");
  const float* v = ptr<float>(q_vals, "q_vals");
  if (!canonical_query(q_terms, q_vals, dim, t, v)) return nb::none();
  std::vector<int32_t> ids(k);
  std::vector<float> sc(k);
  int n;
  {
    nb::gil_scoped_release nogil;
    n = run(t, v, (int64_t)q_terms.shape(0), ids.data(), sc.data());
  }
  return hits_to_numpy(ids, sc, n);
}

// A CSR batch of queries through `run(ptr, terms, values, n_queries, ids, scores)`, GIL released:
// [n_queries, k] arrays (padded by the kernels).
template <class Run>
nb::tuple run_batch(const Arr& q_ptr, const Arr& q_terms, const Arr& q_vals, int k, Run run) {
  const int64_t* p = ptr<int64_t>(q_ptr, "q_ptr");
  const int32_t* t = ptr<int32_t>(q_terms, "q_terms");
  const float* v = ptr<float>(q_vals, "q_vals");
  int64_t nq = (int64_t)q_ptr.shape(0) - 1;
  auto* ids = new int32_t[nq * k];
  auto* sc = new float[nq * k];
  {
    nb::gil_scoped_release nogil;
    run(p, t, v, nq, ids, sc);
  }
  return nb::make_tuple(owned(ids, {(size_t)nq, (size_t)k}), owned(sc, {(size_t)nq, (size_t)k}));
}

struct SeismicBase {
  virtual ~SeismicBase() = default;
  virtual int search(const int32_t*, const float*, int64_t, int, int, float, int, int32_t*,
                     float*) = 0;
  virtual void search_batch(const int64_t*, const int32_t*, const float*, int64_t, int, int, float,
                            int, int, int32_t*, float*) = 0;
};

template <class Fwd, class DocT>
struct SeismicImpl : SeismicBase {
  explicit SeismicImpl(const lsr::SeismicArrays<Fwd, DocT>& a) : k(a) {}
  int search(const int32_t* t, const float* v, int64_t n, int kk, int qc, float hf, int kx,
             int32_t* ids, float* sc) override {
    return k.search(t, v, n, kk, qc, hf, kx, ids, sc);
  }
  void search_batch(const int64_t* p, const int32_t* t, const float* v, int64_t nq, int kk, int qc,
                    float hf, int kx, int th, int32_t* ids, float* sc) override {
    k.search_batch(p, t, v, nq, kk, qc, hf, kx, th, ids, sc);
  }
  lsr::SeismicKernel<Fwd, DocT> k;
};

template <class Fwd, class DocT>
SeismicBase* make_seismic(nb::dict a, const Fwd& fwd, int64_t n_docs, int64_t dim, int64_t max_blocks) {
  auto g = [&](const char* name) { return nb::cast<Arr>(a[name]); };
  lsr::SeismicArrays<Fwd, DocT> s;
  s.n_docs = n_docs;
  s.dim = dim;
  s.max_blocks_per_list = max_blocks;
  s.fwd = fwd;
  s.list_block_ptr = ptr<int64_t>(g("list_block_ptr"), "list_block_ptr");
  s.block_doc_ptr = ptr<int64_t>(g("block_doc_ptr"), "block_doc_ptr");
  s.block_docs = ptr<DocT>(g("block_docs"), "block_docs");
  s.block_levels = ptr<float>(g("block_levels"), "block_levels");
  s.list_entry_ptr = ptr<int64_t>(g("list_entry_ptr"), "list_entry_ptr");
  s.list_shift = ptr<uint8_t>(g("list_shift"), "list_shift");
  s.list_dir_ptr = ptr<int64_t>(g("list_dir_ptr"), "list_dir_ptr");
  s.summary_dir = ptr<uint16_t>(g("summary_dir"), "summary_dir");
  s.list_key_ptr = ptr<int64_t>(g("list_key_ptr"), "list_key_ptr");
  s.entry_key = ptr<uint8_t>(g("entry_key"), "entry_key");
  if (a.contains("knn_neighbors")) {  // optional κ-NN graph, n_docs rows (checked on load)
    Arr knn = g("knn_neighbors");
    s.knn = ptr<uint32_t>(knn, "knn_neighbors");
    s.knn_k = n_docs > 0 ? (int64_t)knn.shape(0) / n_docs : 0;
  }
  return new SeismicImpl<Fwd, DocT>(s);
}

// Posting lists of an index of at most 65,536 documents hold u16 ids (index.py), others i32.
template <class Fwd>
SeismicBase* make_seismic(nb::dict a, const Fwd& fwd, int64_t n_docs, int64_t dim, int64_t max_blocks) {
  if (nb::cast<Arr>(a["block_docs"]).dtype() == nb::dtype<uint16_t>())
    return make_seismic<Fwd, uint16_t>(a, fwd, n_docs, dim, max_blocks);
  return make_seismic<Fwd, int32_t>(a, fwd, n_docs, dim, max_blocks);
}

// forward_layout "arrays" (term ids u16 or u32, values f16 or f32).
template <class TermT, class ValT>
SeismicBase* make_plain(nb::dict a, int64_t n_docs, int64_t dim, int64_t max_blocks) {
  lsr::PlainForward<TermT, ValT> f;
  f.ptr = ptr<int64_t>(nb::cast<Arr>(a["fwd_ptr"]), "fwd_ptr");
  f.terms = ptr<TermT>(nb::cast<Arr>(a["fwd_terms"]), "fwd_terms");
  if constexpr (std::is_same_v<ValT, lsr::Half>)
    f.vals = reinterpret_cast<const lsr::Half*>(nb::cast<Arr>(a["fwd_vals"]).data());
  else
    f.vals = ptr<float>(nb::cast<Arr>(a["fwd_vals"]), "fwd_vals");
  return make_seismic(a, f, n_docs, dim, max_blocks);
}

// forward_layout "records" (values f16 or f32; offsets checked on load, forward.check_records).
template <class ValT>
SeismicBase* make_records(nb::dict a, int64_t n_docs, int64_t dim, int64_t max_blocks) {
  lsr::RecordForward<ValT> f;
  f.off = ptr<int64_t>(nb::cast<Arr>(a["fwd_off"]), "fwd_off");
  f.rec = ptr<uint8_t>(nb::cast<Arr>(a["fwd_rec"]), "fwd_rec");
  f.zeros = ((dim - 1) >> 8) + 1;
  if (dim > 65536) throw std::invalid_argument("forward records need dim <= 65536");
  return make_seismic(a, f, n_docs, dim, max_blocks);
}

// Owns the kernel and keeps the numpy arrays it points into alive (they may be memory-mapped).
class Seismic {
 public:
  Seismic(nb::dict arrays, int64_t n_docs, int64_t dim, int64_t max_blocks)
      : keep_(arrays), dim_(dim) {
    if (arrays.contains("fwd_rec")) {
      // value bytes from the record layout's parameter, passed as the key "fwd_value_bytes"
      int vb = nb::cast<int>(arrays["fwd_value_bytes"]);
      if (vb == 2) impl_.reset(make_records<lsr::Half>(arrays, n_docs, dim, max_blocks));
      else if (vb == 4) impl_.reset(make_records<float>(arrays, n_docs, dim, max_blocks));
      else throw std::invalid_argument("fwd_value_bytes must be 2 or 4");
    } else {
      bool u16 = nb::cast<Arr>(arrays["fwd_terms"]).dtype() == nb::dtype<uint16_t>();
      bool f16 = is_f16(nb::cast<Arr>(arrays["fwd_vals"]));
      if (u16 && f16) impl_.reset(make_plain<uint16_t, lsr::Half>(arrays, n_docs, dim, max_blocks));
      else if (u16) impl_.reset(make_plain<uint16_t, float>(arrays, n_docs, dim, max_blocks));
      else if (f16) impl_.reset(make_plain<uint32_t, lsr::Half>(arrays, n_docs, dim, max_blocks));
      else impl_.reset(make_plain<uint32_t, float>(arrays, n_docs, dim, max_blocks));
    }
    if (arrays.contains("doc_ids")) {
      Arr ids = nb::cast<Arr>(arrays["doc_ids"]);
      if ((int64_t)ids.shape(0) != n_docs)
        throw std::invalid_argument("doc_ids has " + std::to_string(ids.shape(0)) + " entries for " +
                                    std::to_string(n_docs) + " documents");
      doc_ids_ = ptr<uint32_t>(ids, "doc_ids");
    }
  }

  nb::object search(Arr q_terms, Arr q_vals, int k, int query_cut, float heap_factor, int knn_expand) {
    return run_one(q_terms, q_vals, dim_, k, [&](auto t, auto v, int64_t n, auto ids, auto sc) {
      int hits = impl_->search(t, v, n, k, query_cut, heap_factor, knn_expand, ids, sc);
      to_input_rows(ids, hits);
      return hits;
    });
  }

  nb::tuple search_batch(Arr q_ptr, Arr q_terms, Arr q_vals, int k, int query_cut,
                         float heap_factor, int n_threads, int knn_expand) {
    return run_batch(q_ptr, q_terms, q_vals, k, [&](auto p, auto t, auto v, int64_t nq, auto ids, auto sc) {
      impl_->search_batch(p, t, v, nq, k, query_cut, heap_factor, knn_expand, n_threads, ids, sc);
      to_input_rows(ids, nq * k);
    });
  }

 private:
  // Reordered indexes (doc_order "top_term") number documents internally; results are input
  // rows. Padding (-1) stays.
  void to_input_rows(int32_t* ids, int64_t n) const {
    if (!doc_ids_) return;
    for (int64_t i = 0; i < n; ++i)
      if (ids[i] >= 0) ids[i] = (int32_t)doc_ids_[ids[i]];
  }

  nb::dict keep_;
  int64_t dim_;
  std::unique_ptr<SeismicBase> impl_;
  const uint32_t* doc_ids_ = nullptr;  // checked on load: a permutation of the documents
};

class Exact {
 public:
  Exact(Arr col_ptr, Arr col_docs, Arr col_vals, int64_t n_docs)
      : keep_(nb::make_tuple(col_ptr, col_docs, col_vals)), dim_((int64_t)col_ptr.shape(0) - 1) {
    lsr::ExactArrays a;
    a.n_docs = n_docs;
    a.dim = dim_;
    a.col_ptr = ptr<int64_t>(col_ptr, "col_ptr");
    a.col_docs = ptr<int32_t>(col_docs, "col_docs");
    a.col_vals = ptr<float>(col_vals, "col_vals");
    k_ = std::make_unique<lsr::ExactKernel>(a);
  }

  nb::object search(Arr q_terms, Arr q_vals, int k) {
    return run_one(q_terms, q_vals, dim_, k, [&](auto t, auto v, int64_t n, auto ids, auto sc) {
      return k_->search(t, v, n, k, ids, sc);
    });
  }

  nb::tuple search_batch(Arr q_ptr, Arr q_terms, Arr q_vals, int k, int n_threads) {
    return run_batch(q_ptr, q_terms, q_vals, k, [&](auto p, auto t, auto v, int64_t nq, auto ids, auto sc) {
      k_->search_batch(p, t, v, nq, k, n_threads, ids, sc);
    });
  }

 private:
  nb::tuple keep_;
  int64_t dim_;
  std::unique_ptr<lsr::ExactKernel> k_;
};

}  // namespace

// SPLADE head + max-pooling (splade_head.hpp): states [T, K], packed [tiles, K, 16] float32,
// starts [n + 1] int64 -> [n, vocab] float32 maxima of the raw logits.
nb::ndarray<nb::numpy, float> splade_max_logits(
    nb::ndarray<nb::numpy, nb::ro, float, nb::ndim<2>, nb::c_contig, nb::device::cpu> states,
    nb::ndarray<nb::numpy, nb::ro, float, nb::ndim<3>, nb::c_contig, nb::device::cpu> packed,
    nb::ndarray<nb::numpy, nb::ro, int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu> starts,
    int64_t vocab, int n_threads) {
  const int64_t K = (int64_t)states.shape(1), T = (int64_t)states.shape(0);
  if ((int64_t)packed.shape(1) != K || packed.shape(2) != (size_t)lsr::kTile)
    throw std::invalid_argument("packed weights must be [tiles, hidden, 16] with the states' hidden size");
  if (vocab < 1 || (int64_t)packed.shape(0) * lsr::kTile < vocab)
    throw std::invalid_argument("vocab does not fit the packed weights");
  if (starts.shape(0) < 1) throw std::invalid_argument("starts must hold at least one offset");
  const int64_t n = (int64_t)starts.shape(0) - 1;
  const int64_t* st = starts.data();
  for (int64_t i = 0; i < n; ++i)
    if (st[i] < 0 || st[i] > st[i + 1] || st[i + 1] > T)
      throw std::invalid_argument("starts must be non-decreasing offsets within the states");
  auto* out = new float[std::max<int64_t>(n * vocab, 1)];
  {
    nb::gil_scoped_release nogil;
    lsr::splade_max_logits(states.data(), K, packed.data(), vocab, st, n, out, n_threads);
  }
  return owned(out, {(size_t)n, (size_t)vocab});
}

// Dense first pass (dense_i8.hpp): codes [n, d] int8, scales [n] float32, queries [nq, d] float32
// -> [nq, n] float32 approximate dot products.
nb::ndarray<nb::numpy, float> dense_i8_scores(
    nb::ndarray<nb::numpy, nb::ro, int8_t, nb::ndim<2>, nb::c_contig, nb::device::cpu> codes,
    nb::ndarray<nb::numpy, nb::ro, float, nb::ndim<1>, nb::c_contig, nb::device::cpu> scales,
    nb::ndarray<nb::numpy, nb::ro, float, nb::ndim<2>, nb::c_contig, nb::device::cpu> queries) {
  const int64_t n = (int64_t)codes.shape(0), d = (int64_t)codes.shape(1), nq = (int64_t)queries.shape(0);
  if ((int64_t)scales.shape(0) != n) throw std::invalid_argument("scales must hold one value per row");
  if ((int64_t)queries.shape(1) != d)
    throw std::invalid_argument("queries have " + std::to_string(queries.shape(1)) +
                                " dimensions, the rows " + std::to_string(d));
  auto* out = new float[std::max<int64_t>(n * nq, 1)];
  {
    nb::gil_scoped_release nogil;
    lsr::dense_i8_scores(codes.data(), scales.data(), n, d, queries.data(), nq, out);
  }
  return owned(out, {(size_t)nq, (size_t)n});
}

// CMake names each build variant (lsr_native, lsr_native_v2, lsr_native_v3) through this macro.
#ifndef LSR_MODULE_NAME
#define LSR_MODULE_NAME lsr_native
#endif

NB_MODULE(LSR_MODULE_NAME, m) {
  m.doc() = "lsr-search C++ kernels (Seismic and exact term-at-a-time search, int8 dense scan, fused SPLADE head).";
  nb::class_<Seismic>(m, "SeismicKernel")
      .def(nb::init<nb::dict, int64_t, int64_t, int64_t>(), "arrays"_a, "n_docs"_a, "dim"_a,
           "max_blocks_per_list"_a)
      .def("search", &Seismic::search, "q_terms"_a, "q_vals"_a, "k"_a, "query_cut"_a,
           "heap_factor"_a, "knn_expand"_a = 0)
      .def("search_batch", &Seismic::search_batch, "q_ptr"_a, "q_terms"_a, "q_vals"_a, "k"_a,
           "query_cut"_a, "heap_factor"_a, "n_threads"_a, "knn_expand"_a = 0);
  // How score_doc fills its lanes (common.hpp, Scorer): "gather" by default on Intel CPUs of
  // an AVX2 build, "insert" on others, "scalar" without AVX2. set_scorer switches it
  // process-wide (A/B benchmarks, the equality test) and returns the previous mode; a build
  // without AVX2 refuses the vector modes.
  m.def("scorers", [] {
#if defined(__AVX2__) && defined(__F16C__)
    return std::vector<std::string>(std::begin(kScorerNames), std::end(kScorerNames));
#else
    return std::vector<std::string>{kScorerNames[lsr::kScalar]};
#endif
  });
  m.def("scorer", [] { return std::string(kScorerNames[lsr::g_scorer]); });
  m.def("set_scorer", [](const std::string& name) {
    std::string was = kScorerNames[lsr::g_scorer];
    int mode = -1;
    for (int i = 0; i < (int)std::size(kScorerNames); ++i)
      if (name == kScorerNames[i]) mode = i;
#if !(defined(__AVX2__) && defined(__F16C__))
    if (mode > 0) mode = -1;
#endif
    if (mode < 0) throw std::invalid_argument("unknown or unsupported scorer: " + name);
    lsr::g_scorer = lsr::Scorer(mode);
    return was;
  }, "name"_a);
  m.def("dense_i8_scores", &dense_i8_scores, "codes"_a, "scales"_a, "queries"_a);
  m.def("splade_max_logits", &splade_max_logits, "states"_a, "packed"_a, "starts"_a, "vocab"_a,
        "n_threads"_a);
  nb::class_<Exact>(m, "ExactKernel")
      .def(nb::init<Arr, Arr, Arr, int64_t>(), "col_ptr"_a, "col_docs"_a, "col_vals"_a, "n_docs"_a)
      .def("search", &Exact::search, "q_terms"_a, "q_vals"_a, "k"_a)
      .def("search_batch", &Exact::search_batch, "q_ptr"_a, "q_terms"_a, "q_vals"_a, "k"_a,
           "n_threads"_a);
}
