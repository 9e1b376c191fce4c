// Internal: the engine's worker threads, one per physical core, grouped by
// NUMA node.
//
// A WorkerPool owns persistent threads, one per core listed in a
// PlacementPlan, each bound to its core (all SMT siblings of that core, never
// a second worker on them) and with its memory policy set to its node. The
// threads form one sub-pool per node. Work is handed to a sub-pool as a row
// count; inside the sub-pool the rows are split statically into one
// contiguous range per worker (Schedule::Static, the default: the same worker
// always reads the same rows, so first-touched pages stay local) or handed
// out in `grain`-sized chunks from a cursor private to that node
// (Schedule::Dynamic: stealing, but only among the node's own workers).
// There is no cursor or counter shared by workers of different nodes; the
// only cross-node traffic is the start signal and the completion count.
//
// Hot path: a run allocates nothing and creates no thread. The job is a
// function_ref to the caller's lambda on the caller's stack; workers spin
// briefly on their node's generation counter, then sleep on it
// (std::atomic::wait, a futex). The calling thread publishes the job, runs
// the share of worker 0 of the home node (WorkerPoolOptions::
// caller_participates, the default; otherwise it takes no share), then spins
// briefly and sleeps until the last worker is done. An exception thrown by a job is caught in the worker,
// the other workers of the run finish (dynamic schedules stop handing out
// chunks), and the first exception is rethrown to the caller.
//
// Runs from different threads are serialized (one run at a time). Calling a
// run from inside a job (a worker thread) throws ds4::Error(InvalidArgument).
//
// fork(): the threads of a pool do not exist in a child process. fork waits
// for the runs in progress (a pthread_atfork handler holds every pool's run
// lock across it), and the child's first run starts a new set of workers
// (the old thread objects are abandoned, never joined); the parent goes on
// with its own.
//
// Results do not depend on the schedule or the number of workers as long as
// each row is computed from its inputs alone (no reduction across rows in a
// thread-dependent order); see docs/placement.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "ds4/placement.hpp"

namespace ds4::placement {

class Topology;

// A non-owning reference to a callable (never allocates; the callable must
// outlive the call, which a run guarantees by blocking).
template <class Sig>
class FunctionRef;

template <class R, class... Args>
class FunctionRef<R(Args...)> {
public:
    template <class F, class = std::enable_if_t<!std::is_same_v<std::remove_cvref_t<F>, FunctionRef>>>
    FunctionRef(F&& f) noexcept  // NOLINT(google-explicit-constructor)
        : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
          call_([](void* o, Args... a) -> R {
              return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(a)...);
          }) {}
    R operator()(Args... a) const { return call_(obj_, std::forward<Args>(a)...); }

private:
    void* obj_;
    R (*call_)(void*, Args...);
};

enum class Schedule {
    Static,   // one contiguous, grain-aligned range per worker
    Dynamic,  // grain-sized chunks from a cursor private to the node
};

struct WorkerPoolOptions {
    // Bind each worker to its core and its memory policy to its node (when
    // the topology supports it; otherwise warn once and run unbound).
    bool bind = true;
    // Spin iterations (with a pause instruction) before a waiting thread
    // sleeps. Workers use `worker_spin`, the caller `caller_spin`.
    int worker_spin = 20000;
    int caller_spin = 2000;
    // The calling thread acts as worker 0 of the home node's sub-pool (the
    // plan's home node; sub-pool 0 for the unbound constructor), so N cores
    // get N threads, not N + 1. Its affinity is never changed: it is the one
    // unbound worker. When false, every worker is a pool thread and the
    // caller only waits.
    bool caller_participates = true;
};

// How the binding went, for reports and tests.
struct BindingStatus {
    bool requested = false;   // options.bind
    bool supported = false;   // the topology can bind threads
    int bound_workers = 0;    // pool threads whose cpubind succeeded
    int pool_threads = 0;     // threads the pool created (workers minus the caller)
    bool caller_is_worker = false;  // worker 0 of `caller_node` is the calling thread (never bound)
    int caller_node = -1;           // its sub-pool
    bool all_bound() const noexcept { return bound_workers == pool_threads; }
};

struct WorkerPoolStats {
    uint64_t runs = 0;         // completed parallel calls
    uint64_t worker_sleeps = 0;  // times a worker went to sleep waiting for work
};

class WorkerPool {
public:
    // One sub-pool per plan node that runs workers (in plan order), one
    // worker per listed core. The topology must be the one the plan was made
    // from; the pool keeps it alive.
    WorkerPool(std::shared_ptr<const Topology> topology, const PlacementPlan& plan, WorkerPoolOptions options = {});
    // Unbound pool: sub-pool k has workers_per_node[k] workers (each >= 1) and
    // reports os index k. For tests and for machines without hwloc support.
    explicit WorkerPool(const std::vector<int>& workers_per_node, WorkerPoolOptions options = {});
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    int n_nodes() const noexcept { return static_cast<int>(subs_.size()); }
    int workers(int node) const noexcept;
    int total_workers() const noexcept { return total_workers_; }
    // OS index of sub-pool `node`; sub-pool of an OS index (-1 if none).
    int node_os_index(int node) const noexcept;
    int subpool_of(int os_index) const noexcept;
    // Global index of worker `worker` of sub-pool `node` (for per-worker scratch).
    int worker_id(int node, int worker) const noexcept;
    BindingStatus binding() const noexcept { return binding_; }
    WorkerPoolStats stats() const noexcept;

    // fn(begin, end, worker) over [0, n) with the workers of sub-pool `node`;
    // worker in [0, workers(node)). Ranges are multiples of `grain` except
    // the last one.
    template <class F>
    void parallel_for(int node, int64_t n, F&& fn, int64_t grain = 1, Schedule schedule = Schedule::Static) {
        check_node(node);
        auto wrap = [&fn](int, int64_t b, int64_t e, int w) { fn(b, e, w); };
        Task t{wrap, grain, schedule};
        run_one(node, n, t);
    }

    // Every sub-pool k at once: fn(k, begin, end, worker) over [0, n[k]).
    // n.size() must equal n_nodes().
    template <class F>
    void parallel_for_nodes(std::span<const int64_t> n, F&& fn, int64_t grain = 1,
                            Schedule schedule = Schedule::Static) {
        Task t{fn, grain, schedule};
        run_nodes(n, t);
    }

    // All workers of all nodes: [0, n) is cut into one contiguous block per
    // node, proportional to its workers (grain-aligned), then split inside
    // the node. fn(begin, end, global_worker_id).
    template <class F>
    void parallel_for_all(int64_t n, F&& fn, int64_t grain = 1, Schedule schedule = Schedule::Static) {
        auto wrap = [this, &fn](int node, int64_t b, int64_t e, int w) { fn(b, e, worker_id(node, w)); };
        Task t{wrap, grain, schedule};
        run_all(n, t);
    }

private:
    using JobFn = FunctionRef<void(int, int64_t, int64_t, int)>;
    struct Task {
        JobFn fn;
        int64_t grain;
        Schedule schedule;
    };
    struct SubPool;
    struct WorkerSlot {
        int node = 0;
        int index = 0;
        int core_pu = -1;  // -1: unbound
        std::thread thread;  // not joinable for the caller's slot
    };

    void start(std::vector<std::vector<int>> cores_per_node, const std::vector<int>& os_indices, int caller_node);
    void spawn_workers();  // one thread per slot but the caller's; waits until all have started
    void stop_workers() noexcept;
    void abandon_workers() noexcept;
    void restart_after_fork();
    std::unique_lock<std::mutex> lock_runs();  // serializes runs; restarts the workers in a forked child
    friend struct ForkHandlers;
    void check_node(int node) const;
    void run_one(int node, int64_t n, const Task& t);
    void run_nodes(std::span<const int64_t> n, const Task& t);
    void run_all(int64_t n, const Task& t);
    void dispatch(const Task& t);  // sub-pool ranges already set
    bool is_caller_slot(const WorkerSlot& s) const noexcept;
    void worker_main(WorkerSlot* slot);
    void execute(SubPool& sp, int worker);

    std::shared_ptr<const Topology> topology_;
    WorkerPoolOptions options_;
    std::vector<std::unique_ptr<SubPool>> subs_;
    std::vector<std::unique_ptr<WorkerSlot>> slots_;
    std::vector<int> first_worker_;  // global id of each sub-pool's worker 0
    int total_workers_ = 0;
    BindingStatus binding_;

    std::mutex run_mutex_;
    bool forked_ = false;  // set in a forked child: the workers are gone
    const Task* task_ = nullptr;
    alignas(64) std::atomic<int> nodes_pending_{0};
    std::atomic<bool> failed_{false};
    std::exception_ptr error_;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> runs_{0};
    std::atomic<uint64_t> sleeps_{0};
    std::atomic<int> started_{0};
    std::atomic<int> bound_{0};
};

}  // namespace ds4::placement
