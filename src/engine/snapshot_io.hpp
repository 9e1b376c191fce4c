// Session snapshot files: a versioned header, then the zstd-compressed state.
#pragma once

#include <string>

#include "ds4/config.hpp"
#include "engine/session_impl.hpp"

namespace ds4::engine {

constexpr uint32_t kSnapshotFormatVersion = 1;

void write_snapshot_file(const std::string& path, const Snapshot::Impl& snap, const ModelConfig& cfg);
// Parses and validates against `cfg` (never trusts the file).
void read_snapshot_file(const std::string& path, Snapshot::Impl& snap, const ModelConfig& cfg);

}  // namespace ds4::engine
