// Backend registry and the default (unsupported) operations of Backend.
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "backend/builtin_backends.hpp"
#include "core/error_internal.hpp"
#include "ds4/backend.hpp"

namespace ds4 {
DS4_INLINE_NAMESPACE_BEGIN

using detail::fail;

std::string_view backend_op_name(BackendOp op) noexcept {
    switch (op) {
        case BackendOp::DenseMatmul: return "dense_matmul";
        case BackendOp::RmsNorm: return "rms_norm";
        case BackendOp::HcMix: return "hc_mix";
        case BackendOp::Attention: return "attention";
        case BackendOp::RoutedExperts: return "routed_experts";
    }
    return "?";
}

namespace {

[[noreturn]] void unsupported(const Backend& b, BackendOp op) {
    const std::string_view name = b.name();
    const std::string_view opn = backend_op_name(op);
    fail(ErrorCode::BackendFailure, "backend '%.*s' does not implement %.*s", static_cast<int>(name.size()), name.data(),
         static_cast<int>(opn.size()), opn.data());
}

class HostBuffer final : public BackendBuffer {
public:
    explicit HostBuffer(size_t n) : bytes_(n) {}
    size_t size() const override { return bytes_.size(); }
    void write(size_t off, const void* src, size_t n) override {
        check(off, n);
        std::memcpy(bytes_.data() + off, src, n);
    }
    void read(size_t off, void* dst, size_t n) const override {
        check(off, n);
        std::memcpy(dst, bytes_.data() + off, n);
    }
    void* host_data() override { return bytes_.data(); }

private:
    void check(size_t off, size_t n) const {
        if (off > bytes_.size() || n > bytes_.size() - off)
            fail(ErrorCode::InvalidArgument, "buffer access [%zu, %zu + %zu) outside a buffer of %zu bytes", off, off, n,
                 bytes_.size());
    }
    std::vector<uint8_t> bytes_;
};

struct Registry {
    std::mutex mu;
    std::vector<BackendFactory> factories;

    Registry() {
        factories.push_back(backend::cpu_backend_factory());
        factories.push_back(backend::reference_backend_factory());
    }
    const BackendFactory* find(std::string_view name) {
        for (const auto& f : factories)
            if (f.name == name) return &f;
        return nullptr;
    }
};

Registry& registry() {
    static Registry r;
    return r;
}

}  // namespace

void Backend::prepare_weight(const WeightRef&) {}
std::unique_ptr<BackendBuffer> Backend::allocate(size_t bytes) { return std::make_unique<HostBuffer>(bytes); }
void Backend::matmul(const WeightRef&, const float*, int64_t, float*, int64_t) { unsupported(*this, BackendOp::DenseMatmul); }
void Backend::rms_norm(const float*, const float*, float*, int64_t, int64_t, float) { unsupported(*this, BackendOp::RmsNorm); }
void Backend::hc_pre(const HcPreCall&) { unsupported(*this, BackendOp::HcMix); }
void Backend::hc_post(const HcPostCall&) { unsupported(*this, BackendOp::HcMix); }
void Backend::attention(const AttentionCall&) { unsupported(*this, BackendOp::Attention); }
void Backend::routed_expert(const ExpertCall&) { unsupported(*this, BackendOp::RoutedExperts); }

void register_backend(BackendFactory factory) {
    if (factory.api_version != kBackendApiVersion)
        fail(ErrorCode::BackendFailure, "backend '%s' was built for backend API version %d, this library has version %d",
             factory.name.c_str(), factory.api_version, kBackendApiVersion);
    if (factory.name.empty() || factory.name.find(':') != std::string::npos)
        fail(ErrorCode::InvalidArgument, "backend name '%s' is empty or contains ':'", factory.name.c_str());
    if (!factory.devices || !factory.create)
        fail(ErrorCode::InvalidArgument, "backend '%s': the factory needs devices() and create()", factory.name.c_str());
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    if (r.find(factory.name))
        fail(ErrorCode::InvalidArgument, "a backend named '%s' is already registered", factory.name.c_str());
    r.factories.push_back(std::move(factory));
}

std::vector<std::string> backend_names() {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    std::vector<std::string> out;
    for (const auto& f : r.factories) out.push_back(f.name);
    return out;
}

std::vector<DeviceInfo> backend_devices(std::string_view name) {
    Registry& r = registry();
    std::function<std::vector<DeviceInfo>()> devices;
    {
        std::lock_guard lock(r.mu);
        const BackendFactory* f = r.find(name);
        if (!f)
            fail(ErrorCode::NotFound, "no backend named '%.*s' is registered", static_cast<int>(name.size()), name.data());
        devices = f->devices;
    }
    return devices();
}

std::shared_ptr<Backend> create_backend(std::string_view spec) {
    std::string_view name = spec;
    int index = 0;
    if (const size_t colon = spec.find(':'); colon != std::string_view::npos) {
        name = spec.substr(0, colon);
        const std::string idx(spec.substr(colon + 1));
        char* end = nullptr;
        const long v = std::strtol(idx.c_str(), &end, 10);
        if (idx.empty() || *end != '\0' || v < 0 || v > 1 << 20)
            fail(ErrorCode::InvalidArgument, "backend '%.*s': bad device index '%s'", static_cast<int>(spec.size()),
                 spec.data(), idx.c_str());
        index = static_cast<int>(v);
    }
    Registry& r = registry();
    BackendFactory f;
    {
        std::lock_guard lock(r.mu);
        const BackendFactory* p = r.find(name);
        if (!p)
            fail(ErrorCode::NotFound, "no backend named '%.*s' is registered", static_cast<int>(name.size()), name.data());
        f = *p;
    }
    const size_t n_dev = f.devices().size();
    if (static_cast<size_t>(index) >= n_dev)
        fail(ErrorCode::NotFound, "backend '%s' has %zu device(s), device %d was asked for", f.name.c_str(), n_dev, index);
    std::shared_ptr<Backend> b = f.create(index);
    if (!b) fail(ErrorCode::Internal, "backend '%s' failed to create device %d", f.name.c_str(), index);
    return b;
}

DS4_INLINE_NAMESPACE_END
}  // namespace ds4
