// ds4-test-steering-files MODEL.gguf DIR NORM: steering vectors for the
// tools' tests (tests/tools/tools_test.sh), all at the layer output, scale 1,
// directions of norm NORM:
//   a.ds4steer.gguf         add a random direction on layer 1
//   b.ds4steer.gguf         add another on layer 3
//   ab.ds4steer.gguf        both in one vector: applying a then b (or b then
//                           a) computes exactly what this one computes, each
//                           layer getting one edit either way
//   add_e0.ds4steer.gguf    add NORM * e0 (the first unit vector) on layer 2
//   ablate_e0.ds4steer.gguf ablate e0 on layer 2: after add_e0 it sets the
//                           first value to exactly 0, as it does alone, so
//                           add_e0 then ablate_e0 == ablate_e0 exactly, and
//                           ablate_e0 then add_e0 differs
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "ds4/model.hpp"
#include "ds4/steering.hpp"

namespace {

std::vector<float> random_direction(int width, unsigned seed, float norm) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(width));
    double sq = 0;
    for (float& x : v) {
        x = g(rng);
        sq += static_cast<double>(x) * x;
    }
    for (float& x : v) x *= norm / static_cast<float>(std::sqrt(sq));
    return v;
}

struct Edit {
    int layer;
    std::vector<float> direction;
};

void save(const std::string& path, int n_layer, int width, ds4::SteeringOp op, const std::vector<Edit>& edits) {
    ds4::SteeringVector v(n_layer, width, ds4::SteeringSite::LayerOut, op);
    for (const Edit& e : edits) v.set_direction(e.layer, e.direction);
    v.save(path);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: ds4-test-steering-files MODEL.gguf DIR NORM\n");
        return 2;
    }
    try {
        ds4::ModelOptions mo;
        mo.n_threads = 1;
        const auto model = ds4::Model::load(argv[1], mo);
        const int n = model->config().n_layer, w = model->config().n_embd;
        const std::string dir = std::string(argv[2]) + "/";
        const float norm = std::stof(argv[3]);
        const Edit a{1, random_direction(w, 1, norm)}, b{3, random_direction(w, 2, norm)};
        Edit e0{2, std::vector<float>(static_cast<size_t>(w), 0.0f)};
        e0.direction[0] = 1.0f;
        Edit e0_scaled = e0;
        e0_scaled.direction[0] = norm;
        save(dir + "a.ds4steer.gguf", n, w, ds4::SteeringOp::Add, {a});
        save(dir + "b.ds4steer.gguf", n, w, ds4::SteeringOp::Add, {b});
        save(dir + "ab.ds4steer.gguf", n, w, ds4::SteeringOp::Add, {a, b});
        save(dir + "add_e0.ds4steer.gguf", n, w, ds4::SteeringOp::Add, {e0_scaled});
        save(dir + "ablate_e0.ds4steer.gguf", n, w, ds4::SteeringOp::Ablate, {e0});
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ds4-test-steering-files: %s\n", e.what());
        return 1;
    }
    return 0;
}
