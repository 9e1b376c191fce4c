#include <cstring>

#include "core/error_internal.hpp"
#include "core/log_internal.hpp"
#include "model/model_impl.hpp"
#include "placement/planner.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

namespace {

struct Fnv64 {
    uint64_t h = 0xcbf29ce484222325ull;
    void bytes(const void* p, size_t n) {
        const auto* b = static_cast<const uint8_t*>(p);
        for (size_t i = 0; i < n; ++i) {
            h ^= b[i];
            h *= 0x100000001b3ull;
        }
    }
    template <class T>
    void value(const T& v) {
        bytes(&v, sizeof(v));
    }
    void str(const std::string& s) {
        value(s.size());
        bytes(s.data(), s.size());
    }
};

uint64_t compute_fingerprint(const gguf::File& f, const ModelConfig& c) {
    Fnv64 h;
    for (int v : {c.n_layer, c.n_embd, c.n_vocab, c.n_head, c.head_dim, c.n_rot, c.n_expert, c.n_expert_used,
                  c.expert_ff, c.hc_count})
        h.value(v);
    for (const auto& t : f.tensors()) {
        h.str(t.name);
        h.value(static_cast<uint32_t>(t.type));
        for (uint64_t d : t.shape) h.value(d);
        // Samples of the data: start, middle and end of every tensor.
        const uint64_t k = std::min<uint64_t>(64, t.n_bytes);
        h.bytes(t.data, k);
        h.bytes(t.data + (t.n_bytes - k) / 2, k);
        h.bytes(t.data + t.n_bytes - k, k);
    }
    return h.h;
}

// Plan the placement of the routed experts, start the worker pool and, when
// the plan says so, copy the experts into node-bound memory.
void place_weights(Model::Impl& im) {
    const ModelConfig& c = im.config;
    const model::Weights& w = im.weights;
    PlacementRequest req;
    req.policy = im.options.placement;
    req.n_threads = im.options.n_threads;
    req.n_expert = c.n_expert;
    req.other_bytes = w.other_bytes;
    std::vector<placement::LayerExpertViews> views;
    for (const auto& L : w.layers) {
        auto shape = [](const model::ExpertMatrices& m) { return ExpertMatrixShape{m.rows, m.row_bytes}; };
        req.layers.push_back({shape(L.gate_exps), shape(L.up_exps), shape(L.down_exps)});
        auto view = [](const model::ExpertMatrices& m) { return placement::ExpertTensorView{m.data, m.rows, m.row_bytes}; };
        views.push_back({view(L.gate_exps), view(L.up_exps), view(L.down_exps)});
    }
    im.topology = placement::Topology::load(im.options.topology);
    im.placement = placement::make_placement_plan(*im.topology, req);
    im.pool = std::make_unique<placement::WorkerPool>(im.topology, im.placement);
    if (im.placement.copies_experts) {
        im.expert_store = placement::ExpertStore::build(im.topology, im.placement, *im.pool, views);
        im.expert_store->measure(im.placement);
    }
}

}  // namespace

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;

std::shared_ptr<const Model> Model::load(const std::string& path, const ModelOptions& options) {
    const Version lib = library_version();
    if (lib.major != DS4_VERSION_MAJOR)
        detail::fail(ErrorCode::InvalidArgument, "ds4 headers %d.x do not match the library %d.%d.%d",
                     DS4_VERSION_MAJOR, lib.major, lib.minor, lib.patch);
    std::shared_ptr<Model> m(new Model());
    Impl& im = *m->impl_;
    im.path = path;
    im.options = options;
    gguf::OpenOptions oo;
    oo.populate = options.prefetch_weights;
    im.file = gguf::File::open(path, oo);
    try {
        im.config = ModelConfig::from_gguf(im.file);
        if (options.require_published_shape) im.config.require_published_shape();
        im.weights = model::Weights::bind(im.file, im.config);
        im.backends = model::BackendAssignment::resolve(im.file, im.config, im.weights, options);
        im.file.check_not_truncated();  // placement may copy the experts
        place_weights(im);
        im.file.check_not_truncated();  // the fingerprint samples every tensor
        im.fingerprint = compute_fingerprint(im.file, im.config);
    } catch (const Error& e) {
        // Name the file in every message.
        const std::string msg = e.what();
        if (msg.rfind(path, 0) == 0) throw;
        throw Error(e.code(), path + ": " + msg);
    }
    if (options.load_tokenizer && im.file.find("tokenizer.ggml.tokens")) {
        im.tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_gguf(im.file));
        if (static_cast<int64_t>(im.tokenizer->vocab_size()) > im.config.n_vocab)
            detail::fail(ErrorCode::UnsupportedModel, "%s: the tokenizer has %zu tokens but vocab_size is %d",
                         path.c_str(), im.tokenizer->vocab_size(), im.config.n_vocab);
    }
    DS4_LOG_INFO("loaded %s: %d layers, width %d, %d experts (%llu MiB routed experts mapped, %llu MiB other)",
                 path.c_str(), im.config.n_layer, im.config.n_embd, im.config.n_expert,
                 static_cast<unsigned long long>(im.weights.routed_expert_bytes >> 20),
                 static_cast<unsigned long long>(im.weights.other_bytes >> 20));
    return m;
}

const ModelConfig& Model::config() const noexcept { return impl_->config; }
const ModelOptions& Model::options() const noexcept { return impl_->options; }
const std::string& Model::path() const noexcept { return impl_->path; }
const gguf::File& Model::gguf() const noexcept { return impl_->file; }
const Tokenizer* Model::tokenizer() const noexcept { return impl_->tokenizer.get(); }
uint64_t Model::fingerprint() const noexcept { return impl_->fingerprint; }
const PlacementPlan& Model::placement() const noexcept { return impl_->placement; }
const std::vector<Model::BackendUse>& Model::backend_assignment() const noexcept { return impl_->backends.uses(); }
Model::WeightBytes Model::weight_bytes() const noexcept {
    return {impl_->weights.routed_expert_bytes, impl_->weights.other_bytes};
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
