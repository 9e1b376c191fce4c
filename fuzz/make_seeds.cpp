// ds4-fuzz-seeds DIR: the seed corpus of the fuzz targets, made with the
// library itself (nothing binary is committed), one folder per target:
//   gguf/       a GGUF with every metadata type and a few tensor types, and
//               the steering GGUFs below
//   model/      the micro model (fuzz_common.hpp)
//   steering/   vectors in the three formats, several sites, ops and policies
//   snapshot/   snapshots of micro-model sessions (empty, 3 and 21 tokens)
//   tokenizer/  mode byte + text (plain, Unicode, digits, invalid UTF-8,
//               special-token text) and mode byte + token ids
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ds4/gguf.hpp"
#include "ds4/session.hpp"
#include "ds4/steering.hpp"
#include "fuzz_common.hpp"

namespace {

namespace fs = std::filesystem;
using ds4::gguf::Value;
using ds4::gguf::ValueType;

void write_bytes(const fs::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

void gguf_seeds(const fs::path& dir) {
    ds4::gguf::Writer w;
    w.set("general.architecture", Value::string("fuzz"));
    w.set("u8", Value::u8(1));
    w.set("i8", Value::i8(-1));
    w.set("u16", Value::u16(2));
    w.set("i16", Value::i16(-2));
    w.set("u32", Value::u32(3));
    w.set("i32", Value::i32(-3));
    w.set("u64", Value::u64(4));
    w.set("i64", Value::i64(-4));
    w.set("f32", Value::f32(0.5f));
    w.set("f64", Value::f64(0.25));
    w.set("bool", Value::boolean(true));
    w.set("strings", Value::array_of_strings({"a", "bc"}));
    w.set("nested", Value::array(ValueType::Array, {Value::array_of_strings({"x"}), Value::array_of_strings({})}));
    const std::vector<float> v = {1, 2, 3, 4, 5, 6, 7, 8};
    w.add_tensor_f32("t.f32", {4, 2}, v);
    w.add_tensor("t.f16", ds4::DType::F16, {4}, std::vector<uint8_t>(8, 0x3c));
    w.add_tensor("t.i32", ds4::DType::I32, {2}, std::vector<uint8_t>(8, 1));
    w.write((dir / "types.gguf").string());
}

void steering_seeds(const fs::path& dir, const ds4::Model& model) {
    const int n = model.config().n_layer, w = model.config().n_embd, e = model.config().n_expert;
    auto make = [&](int width, ds4::SteeringSite site, ds4::SteeringOp op) {
        ds4::SteeringVector v(n, width, site, op, 0.5f);
        for (int l = 1; l < n; ++l) v.set_direction(l, std::vector<float>(static_cast<size_t>(width), 0.25f * l));
        return v;
    };
    auto add = make(w, ds4::SteeringSite::LayerOut, ds4::SteeringOp::Add);
    add.provenance.prompt_set_hashes = {1, 2};
    add.provenance.notes["k"] = "v";
    add.save((dir / "add.ds4steer.gguf").string());
    add.save_control_vector((dir / "control.gguf").string());
    auto project = make(w, ds4::SteeringSite::FfnOut, ds4::SteeringOp::Project);
    project.save_ds4_f32((dir / "project.f32").string());
    fs::remove(dir / "project.json");  // the sidecar, not an input of the loaders
    auto clamp = make(w, ds4::SteeringSite::AttnOut, ds4::SteeringOp::Clamp);
    clamp.positions = ds4::PositionPolicy::window(2, 9);
    clamp.set_layer_range(1, 1);
    clamp.save((dir / "clamp.ds4steer.gguf").string());
    make(e, ds4::SteeringSite::RouterLogits, ds4::SteeringOp::Ablate).save((dir / "router.ds4steer.gguf").string());
}

void snapshot_seeds(const fs::path& dir) {
    ds4::Session s(ds4::fuzz::micro_model(), {.context_size = 64});
    s.save((dir / "empty.snap").string());
    const std::vector<ds4::TokenId> three = {1, 2, 3};
    s.prefill(three);
    s.save((dir / "three.snap").string());
    std::vector<ds4::TokenId> more(18);
    for (size_t i = 0; i < more.size(); ++i) more[i] = static_cast<ds4::TokenId>(5 + 7 * i);
    s.prefill(more);
    s.save((dir / "twenty-one.snap").string());
}

void tokenizer_seeds(const fs::path& dir) {
    const std::vector<std::string> texts = {
        "Hello, world! How are you today?",
        "  leading and trailing spaces \t\n\r\n",
        "1234567890 3.14159 1e10 0x1F",
        "Grüße, ça va? Привет мир. 你好，世界。こんにちは。안녕하세요",
        "emoji 👍🏽 and ZWJ 👨‍👩‍👧 sequences",
        std::string("bad utf-8 \xff\xfe \xc3( \xe2\x82 end"),
        "<｜User｜>hi<｜Assistant｜><think>x</think>｜DSML｜",
        "def f(x):\n    return x ** 2  # code\n",
    };
    int i = 0;
    for (const std::string& t : texts) {
        write_bytes(dir / ("text-" + std::to_string(i) + ".bin"), std::string(1, '\0') + t);
        write_bytes(dir / ("special-" + std::to_string(i++) + ".bin"), std::string(1, '\1') + t);
    }
    const std::vector<int32_t> ids = {0, 1, 2, 100, 1000, 50000, 128000, 128799, 129279};
    const std::string id_bytes(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int32_t));
    write_bytes(dir / "decode.bin", std::string(1, '\2') + id_bytes);
    write_bytes(dir / "stream.bin", std::string(1, '\3') + id_bytes);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: ds4-fuzz-seeds DIR\n");
        return 2;
    }
    try {
        const fs::path root = argv[1];
        for (const char* d : {"gguf", "model", "steering", "snapshot", "tokenizer"}) fs::create_directories(root / d);
        ds4::generate_model(ds4::fuzz::micro_model_options(), (root / "model" / "micro.gguf").string());
        gguf_seeds(root / "gguf");
        steering_seeds(root / "steering", *ds4::fuzz::micro_model());
        for (const auto& f : fs::directory_iterator(root / "steering"))
            if (f.path().extension() == ".gguf") fs::copy_file(f.path(), root / "gguf" / f.path().filename(),
                                                               fs::copy_options::overwrite_existing);
        snapshot_seeds(root / "snapshot");
        tokenizer_seeds(root / "tokenizer");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ds4-fuzz-seeds: %s\n", e.what());
        return 1;
    }
    return 0;
}
