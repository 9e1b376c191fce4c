// ds4 — the backend interface: how an accelerator (or any other compute
// device) takes over operations of the DS4 forward pass.
//
// A backend is registered explicitly (no static-initializer magic) with a
// factory that carries the API version it was built against; the registry
// refuses any other version. A Model is loaded with a default backend and
// optional per-tensor overrides (a regular expression searched in the tensor
// name, like llama.cpp's --override-tensor) and per-layer lists of hot
// experts, so that, for example, an accelerator takes attention and the dense
// projections while the routed experts stay on the CPU. Each operation asks
// the assigned backend `supports(op, weight type)` first and falls back to
// the CPU implementation when the answer is no.
//
// Two backends are built in: "cpu" (the engine's SIMD kernels) and
// "reference" (plain f32 loops, no SIMD: the worked example of an external
// backend, see docs/backends.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ds4/dtype.hpp"
#include "ds4/version.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

// Bumped whenever Backend's virtual interface or the call structs change.
inline constexpr int kBackendApiVersion = 1;

enum class DeviceKind { Cpu, Gpu, IntegratedGpu, Accelerator };

struct DeviceInfo {
    std::string name;         // "cpu0", "cuda:1", ...
    std::string description;  // human readable
    DeviceKind kind = DeviceKind::Cpu;
    uint64_t memory_total = 0;  // bytes (0 = unknown)
    uint64_t memory_free = 0;
};

// The operations of a DS4 layer a backend can take over.
enum class BackendOp {
    DenseMatmul,    // y = W x for one weight matrix (attention, shared expert, router, HC, LM head)
    RmsNorm,        // y = x * w / sqrt(mean(x^2) + eps), rows of n values
    HcMix,          // mHC pre-mix (streams -> sublayer input) and post-mix (sublayer output -> streams)
    Attention,      // sink-aware softmax attention of one token over its visible KV rows
    RoutedExperts,  // one routed expert applied to the tokens that selected it
};
std::string_view backend_op_name(BackendOp op) noexcept;

// A weight matrix as stored in the model file: rows x cols, row r at
// data + r * row_bytes, elements of `type` (possibly quantized). For routed
// experts, `name` is the 3-D tensor's name and `expert` the slice.
struct WeightRef {
    std::string_view name;
    int expert = -1;
    DType type = DType::F32;
    const void* data = nullptr;
    int64_t rows = 0;
    int64_t cols = 0;
    size_t row_bytes = 0;
};

// mHC pre-mix of n tokens (model spec 3.2): for each token, the RMS-normalised
// streams X[hc*d] are projected by `fn` to the mix vector, split into pre,
// post and the Sinkhorn-normalised combine matrix (written to split[t]), and
// the sublayer input out[t] = sum_h pre[h] * X[h].
struct HcPreCall {
    const float* streams = nullptr;  // [n][hc*d]
    int64_t n_tok = 0;
    int hc = 0;
    int64_t d = 0;
    WeightRef fn;                    // mix x (hc*d)
    const float* scale = nullptr;    // 3
    const float* base = nullptr;     // mix
    int sinkhorn_iters = 0;
    float eps = 0;
    float* out = nullptr;            // [n][d]
    float* split = nullptr;          // [n][mix]: pre (hc), post (hc), comb (hc*hc)
};

// mHC post-mix: out[t][i] = post[i] * y[t] + sum_j comb[i + hc*j] * X[t][j].
struct HcPostCall {
    const float* streams = nullptr;  // [n][hc*d]
    const float* y = nullptr;        // [n][d] sublayer output
    const float* split = nullptr;    // [n][mix] from HcPreCall
    int64_t n_tok = 0;
    int hc = 0;
    int64_t d = 0;
    float* out = nullptr;            // [n][hc*d]
};

// Attention of one token: H query heads of width hd over N key rows (the
// rows are also the values, model spec 3.4.6), with one sink logit per head.
struct AttentionCall {
    const float* q = nullptr;      // [H][hd]
    const float* keys = nullptr;   // [N][hd]
    int64_t n_rows = 0;
    int heads = 0;
    int head_dim = 0;
    const float* sinks = nullptr;  // [H]
    float scale = 1;               // logit scale (1/sqrt(hd))
    float* out = nullptr;          // [H][hd]
};

// One routed expert over the c tokens that selected it (model spec 3.5.2):
// out[i] = down( silu(min(gate x_i, clamp)) * clamp(up x_i, -clamp, clamp) * weight[i] ).
struct ExpertCall {
    WeightRef gate, up, down;       // ff x d, ff x d, d x ff
    const float* x = nullptr;       // [c][d]
    const float* weights = nullptr; // [c] routing weights
    int64_t n_tok = 0;
    float clamp = 0;
    float* out = nullptr;           // [c][d]
};

// Memory owned by a backend (device memory for an accelerator).
class BackendBuffer {
public:
    virtual ~BackendBuffer() = default;
    virtual size_t size() const = 0;
    virtual void write(size_t offset, const void* src, size_t bytes) = 0;
    virtual void read(size_t offset, void* dst, size_t bytes) const = 0;
    // Host address of the memory, or null when it is not host visible.
    virtual void* host_data() { return nullptr; }
};

// A backend instance on one device. Calls may come from several sessions at
// once (a Model is shared between threads): implementations must be thread
// safe or serialise internally. Operations the backend does not support
// throw ds4::Error (the engine never calls them: it asks supports() first).
class Backend {
public:
    virtual ~Backend() = default;

    virtual std::string_view name() const = 0;
    virtual DeviceInfo device() const = 0;
    virtual bool supports(BackendOp op, DType weight_type = DType::F32) const = 0;

    // Called once at model load for every weight assigned to this backend
    // (an accelerator copies it to device memory here).
    virtual void prepare_weight(const WeightRef& weight);
    // Default: host memory.
    virtual std::unique_ptr<BackendBuffer> allocate(size_t bytes);

    // y[t * y_stride + r] = sum_c W[r][c] * x[t][c] for t < n_tok, r < W.rows.
    virtual void matmul(const WeightRef& w, const float* x, int64_t n_tok, float* y, int64_t y_stride);
    // y[r] = x[r] * w / sqrt(mean(x[r]^2) + eps) for rows of n values; w may be null.
    virtual void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps);
    virtual void hc_pre(const HcPreCall& call);
    virtual void hc_post(const HcPostCall& call);
    virtual void attention(const AttentionCall& call);
    virtual void routed_expert(const ExpertCall& call);
};

// How a backend is discovered and created.
struct BackendFactory {
    int api_version = kBackendApiVersion;  // must equal kBackendApiVersion
    std::string name;                       // unique, e.g. "cuda"
    std::function<std::vector<DeviceInfo>()> devices;
    std::function<std::shared_ptr<Backend>(int device_index)> create;
};

// Register a backend factory. Throws ds4::Error for an API version mismatch,
// an empty or duplicate name, or missing functions. "cpu" and "reference"
// are always registered.
void register_backend(BackendFactory factory);
// Names of the registered backends, in registration order.
std::vector<std::string> backend_names();
// Devices a registered backend offers. Throws NotFound for an unknown name.
std::vector<DeviceInfo> backend_devices(std::string_view name);
// Create an instance of a registered backend ("name" or "name:index").
std::shared_ptr<Backend> create_backend(std::string_view name_and_device);

// Model options: which backend runs what.
struct TensorOverride {
    // A regular expression searched in the tensor name: the ECMAScript
    // subset tensor names need (literals, ., [...], \d \w \s, ^ $, groups,
    // |, * + ? {n,m}; at most 1024 bytes), matched in linear time;
    // back-references and lookaround are refused. See docs/backends.md.
    std::string pattern;
    std::string backend;  // "name" or "name:device"
};
struct HotExperts {
    int layer = 0;
    std::vector<int> experts;
    std::string backend;
};

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
