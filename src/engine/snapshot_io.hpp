// Session snapshot files, format v2 (docs/snapshots.md): a fixed header that
// declares every size, checked against the model and the session before the
// rest is read or anything sized by the file is allocated, then the
// zstd-compressed state; an XXH3-64 checksum covers both. Saved atomically.
#pragma once

#include <string>

#include "ds4/config.hpp"
#include "engine/session_impl.hpp"

namespace ds4::engine {

constexpr uint32_t kSnapshotFormatVersion = 2;

// What a snapshot file must fit to be loaded: the model and the session's context.
struct SnapshotTarget {
    const ModelConfig& cfg;
    uint64_t model_fingerprint;
    int64_t max_tokens;
};

void write_snapshot_file(const std::string& path, const Snapshot::Impl& snap, const ModelConfig& cfg);
// Parses and validates against `target` (never trusts the file).
void read_snapshot_file(const std::string& path, Snapshot::Impl& snap, const SnapshotTarget& target);

}  // namespace ds4::engine
