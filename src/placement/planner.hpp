// Internal: turn a topology and a request into a PlacementPlan (see
// include/ds4/placement.hpp for the policies and the Auto rule).
#pragma once

#include <cstdint>
#include <vector>

#include "ds4/placement.hpp"
#include "placement/topology.hpp"

namespace ds4::placement {

// Throws ds4::Error(InvalidArgument) for an inconsistent request (no layers,
// gate/up row mismatch, unknown home node, ...). Each warning of the plan is
// also logged at Warning level when `log` is true, and the decision at Info.
PlacementPlan make_placement_plan(const Topology& topology, const PlacementRequest& request, bool log = true);

// Split `rows` into consecutive ranges, one per weight, in units of
// `granule` rows (the last unit may be short), sizes proportional to the
// weights (largest remainder; ties go to the earlier entry). Entries with
// weight 0 get an empty range. The ranges cover [0, rows) exactly once.
std::vector<RowRange> split_rows(int64_t rows, int64_t granule, const std::vector<int>& weights);

}  // namespace ds4::placement
