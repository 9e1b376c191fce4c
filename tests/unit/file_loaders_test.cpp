// Loaders given what is not a file of theirs (a folder, a device, a FIFO, a
// huge file, absurd arguments) fail with a ds4::Error naming the path; the
// steering writers never leave a partial file and check every write.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <climits>
#include <functional>
#include <random>

#include "ds4/error.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "ds4/steering.hpp"
#include "placement/topology.hpp"
#include "support/files.hpp"
#include "support/random.hpp"
#include "support/models.hpp"

using namespace ds4;
using test_support::random_row;
using test_support::read_bytes;

namespace {

// Expects `load(path)` to fail with a ds4::Error whose message names `path`.
void expect_refused_naming(const std::string& what, const std::function<void(const std::string&)>& load,
                           const std::string& path) {
    try {
        load(path);
        ADD_FAILURE() << what << " loaded " << path;
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << what << ": " << e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << what << " on " << path << ": not a ds4::Error: " << e.what();
    }
}

class FileLoaders : public ::testing::Test {
protected:
    static void SetUpTestSuite() { model_ = Model::load(test_support::tiny_model(WeightMix::F32)); }
    static void TearDownTestSuite() { model_.reset(); }
    static std::shared_ptr<const Model> model_;
    const ModelConfig& cfg() const { return model_->config(); }

    // Every public loader that reads a path.
    std::vector<std::pair<std::string, std::function<void(const std::string&)>>> loaders() const {
        const int L = cfg().n_layer, W = cfg().n_embd;
        return {
            {"Session::load", [](const std::string& p) { Session(model_).load(p); }},
            {"SteeringVector::load", [](const std::string& p) { SteeringVector::load(p); }},
            {"SteeringVector::load_any", [](const std::string& p) { SteeringVector::load_any(p, *model_); }},
            {"SteeringVector::load_ds4_f32", [=](const std::string& p) { SteeringVector::load_ds4_f32(p, L, W); }},
            {"SteeringVector::load_control_vector",
             [=](const std::string& p) { SteeringVector::load_control_vector(p, L); }},
            {"Topology::from_xml_file", [](const std::string& p) { placement::Topology::from_xml_file(p); }},
            {"Model::load", [](const std::string& p) { Model::load(p); }},
        };
    }
    void expect_every_loader_refuses(const std::string& path, const std::string& except = "") const {
        for (const auto& [what, load] : loaders())
            if (what != except) expect_refused_naming(what, load, path);
    }
    SteeringVector f32_vector(uint64_t seed) const {
        SteeringVector v(cfg().n_layer, cfg().n_embd, SteeringSite::FfnOut, SteeringOp::Project, 1.0f);
        for (int l = 0; l < cfg().n_layer; ++l) v.set_direction(l, random_row(cfg().n_embd, seed + l));
        return v;
    }
};
std::shared_ptr<const Model> FileLoaders::model_;

}  // namespace

TEST_F(FileLoaders, ADirectoryIsRefusedWithItsPath) {
    expect_every_loader_refuses(test_support::fresh_dir().string());
}

TEST_F(FileLoaders, DevicesAndFifosAreRefusedWithoutReading) {
    expect_every_loader_refuses("/dev/zero");  // endless: reading it whole would exhaust memory
    const std::string fifo = (test_support::fresh_dir() / "fifo").string();
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    expect_every_loader_refuses(fifo);  // no writer: opening it to read would block for ever
}

TEST_F(FileLoaders, AHugeFileIsRefusedBeforeItIsRead) {
    const auto path = test_support::fresh_dir() / "huge.f32";
    std::ofstream(path).close();
    std::filesystem::resize_file(path, uint64_t{64} << 30);  // sparse: uses no disk
    // Model::load maps a model with MAP_POPULATE before it parses the header,
    // which reads all 64 GiB (of zeros): the GGUF reader's business, not this test's.
    expect_every_loader_refuses(path.string(), "Model::load");
}

TEST_F(FileLoaders, AbsurdLayerCountsAndWidthsAreRefused) {
    const auto dir = test_support::fresh_dir();
    const std::string f32 = (dir / "v.f32").string(), cv = (dir / "cv.gguf").string();
    SteeringVector v = f32_vector(1);
    v.save_ds4_f32(f32);
    SteeringVector c(cfg().n_layer, cfg().n_embd, SteeringSite::LayerOut, SteeringOp::Add, 1.0f);
    c.set_direction(1, random_row(cfg().n_embd, 2));
    c.save_control_vector(cv);
    for (int n : {-3, 0, INT_MAX}) {
        expect_refused_naming("load_control_vector n_layer " + std::to_string(n),
                              [&](const std::string& p) { SteeringVector::load_control_vector(p, n); }, cv);
        expect_refused_naming("load_ds4_f32 n_layer " + std::to_string(n),
                              [&](const std::string& p) { SteeringVector::load_ds4_f32(p, n, cfg().n_embd); }, f32);
        expect_refused_naming("load_ds4_f32 width " + std::to_string(n),
                              [&](const std::string& p) { SteeringVector::load_ds4_f32(p, cfg().n_layer, n); }, f32);
    }
}

TEST_F(FileLoaders, Ds4F32SidecarWriteIsChecked) {
    const auto dir = test_support::fresh_dir();
    std::filesystem::create_directory(dir / "v.json");  // the sidecar cannot be written there
    try {
        f32_vector(3).save_ds4_f32((dir / "v.f32").string());
        ADD_FAILURE() << "saved with no room for the sidecar";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find((dir / "v.json").string()), std::string::npos) << e.what();
    }
    EXPECT_EQ(test_support::names_in(dir), std::vector<std::string>{"v.json"});  // nor the data file written
}

TEST_F(FileLoaders, Ds4F32SaveOnAFullDiskLeavesThePreviousFiles) {
    const auto dir = test_support::fresh_dir();
    const auto path = dir / "v.f32";
    f32_vector(4).save_ds4_f32(path.string());
    const auto before = read_bytes(path), json_before = read_bytes(dir / "v.json");
    {
        test_support::FileSizeLimit full(1000);  // smaller than the file: the write fails part-way
        EXPECT_THROW(f32_vector(5).save_ds4_f32(path.string()), Error);
    }
    EXPECT_EQ(read_bytes(path), before);
    EXPECT_EQ(read_bytes(dir / "v.json"), json_before);
    EXPECT_EQ(test_support::names_in(dir), (std::vector<std::string>{"v.f32", "v.json"}));
}
