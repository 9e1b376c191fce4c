// Fuzz target: every steering-vector loader on a file: SteeringVector::load
// (ds4 GGUF), load_ds4_f32 (the reference engine's raw rows), load_control_vector
// (llama.cpp), load_any (detection by content), each with the micro model's
// dimensions. A vector that loads is applied to a row of the model's width.
#include <cstdint>
#include <vector>

#include "ds4/steering.hpp"
#include "fuzz_common.hpp"

namespace {

void apply(const ds4::SteeringVector& v) {
    std::vector<float> row(static_cast<size_t>(v.width()), 1.0f);
    for (int layer : v.layers())
        ds4::apply_steering_op(v.op(), v.scale(), v.direction(layer), row.data(), 1, v.width(), v.width());
}

template <class Load>
void try_load(Load load) {
    try {
        apply(load());
    } catch (const ds4::Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const ds4::Model& model = *ds4::fuzz::micro_model();
    const int n_layer = model.config().n_layer, width = model.config().n_embd;
    const std::string path = ds4::fuzz::write_input(data, size);
    try_load([&] { return ds4::SteeringVector::load(path); });
    try_load([&] { return ds4::SteeringVector::load_ds4_f32(path, n_layer, width); });
    try_load([&] { return ds4::SteeringVector::load_control_vector(path, n_layer); });
    try_load([&] { return ds4::SteeringVector::load_any(path, model); });
    return 0;
}
