#include "placement/worker_pool.hpp"

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <system_error>

#include "core/error_internal.hpp"
#include "core/log_internal.hpp"
#include "placement/topology.hpp"

namespace ds4::placement {

namespace {

thread_local const WorkerPool* tl_worker_of = nullptr;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#else
    std::this_thread::yield();
#endif
}

// Units [u0, u1) of `units` for part k of `parts` (proportional prefix split).
inline int64_t prefix_share(int64_t units, int64_t cum, int64_t total) {
    return static_cast<int64_t>((static_cast<__int128>(units) * cum) / total);
}

}  // namespace

// pthread_atfork handlers over the pools alive in the process: fork waits for
// the runs in progress and the child marks its pools as having no workers.
struct ForkHandlers {
    static std::mutex& mutex() {
        static std::mutex m;
        return m;
    }
    static std::vector<WorkerPool*>& pools() {
        static std::vector<WorkerPool*> v;
        return v;
    }
    static void add(WorkerPool* p) {
        static std::once_flag once;
        std::call_once(once, [] { pthread_atfork(&prepare, &parent, &child); });
        std::lock_guard<std::mutex> lock(mutex());
        pools().push_back(p);
    }
    static void remove(WorkerPool* p) {
        std::lock_guard<std::mutex> lock(mutex());
        auto& v = pools();
        v.erase(std::remove(v.begin(), v.end(), p), v.end());
    }
    static void prepare() {
        mutex().lock();
        for (WorkerPool* p : pools()) p->run_mutex_.lock();
    }
    static void parent() {
        for (WorkerPool* p : pools()) p->run_mutex_.unlock();
        mutex().unlock();
    }
    static void child() {
        for (WorkerPool* p : pools()) {
            p->forked_ = true;
            p->run_mutex_.unlock();
        }
        mutex().unlock();
    }
};

struct alignas(64) WorkerPool::SubPool {
    int index = 0;  // position in subs_
    int os_index = 0;
    int n_workers = 0;
    // Rows of the current run: [base, base + n). Written by the caller before
    // the generation bump (release), read by the workers after it (acquire).
    int64_t base = 0, n = 0;
    alignas(64) std::atomic<uint32_t> generation{0};
    alignas(64) std::atomic<int> pending{0};
    alignas(64) std::atomic<int64_t> cursor{0};
};

WorkerPool::WorkerPool(std::shared_ptr<const Topology> topology, const PlacementPlan& plan, WorkerPoolOptions options)
    : topology_(std::move(topology)), options_(options) {
    if (!topology_) detail::fail(ErrorCode::InvalidArgument, "worker pool: no topology");
    std::vector<std::vector<int>> cores;
    std::vector<int> os;
    for (const auto& n : plan.nodes) {
        if (n.n_threads <= 0) continue;
        if (topology_->find_node(n.os_index) < 0)
            detail::fail(ErrorCode::InvalidArgument, "worker pool: plan node %d is not in the topology", n.os_index);
        cores.push_back(n.cores);
        os.push_back(n.os_index);
    }
    if (cores.empty()) detail::fail(ErrorCode::InvalidArgument, "worker pool: the plan has no workers");
    binding_.requested = options_.bind;
    binding_.supported = topology_->cpubind_supported();
    int caller = 0;
    for (size_t k = 0; k < os.size(); ++k)
        if (os[k] == plan.home_node) caller = static_cast<int>(k);
    start(std::move(cores), os, caller);
}

WorkerPool::WorkerPool(const std::vector<int>& workers_per_node, WorkerPoolOptions options) : options_(options) {
    if (workers_per_node.empty()) detail::fail(ErrorCode::InvalidArgument, "worker pool: no sub-pools");
    std::vector<std::vector<int>> cores;
    std::vector<int> os;
    for (size_t k = 0; k < workers_per_node.size(); ++k) {
        if (workers_per_node[k] <= 0)
            detail::fail(ErrorCode::InvalidArgument, "worker pool: sub-pool %zu has %d workers", k, workers_per_node[k]);
        cores.emplace_back(static_cast<size_t>(workers_per_node[k]), -1);
        os.push_back(static_cast<int>(k));
    }
    options_.bind = false;
    start(std::move(cores), os, 0);
}

void WorkerPool::start(std::vector<std::vector<int>> cores_per_node, const std::vector<int>& os_indices,
                       int caller_node) {
    if (options_.caller_participates) {
        binding_.caller_is_worker = true;
        binding_.caller_node = caller_node;
    }
    for (size_t k = 0; k < cores_per_node.size(); ++k) {
        auto sp = std::make_unique<SubPool>();
        sp->index = static_cast<int>(k);
        sp->os_index = os_indices[k];
        sp->n_workers = static_cast<int>(cores_per_node[k].size());
        first_worker_.push_back(total_workers_);
        total_workers_ += sp->n_workers;
        subs_.push_back(std::move(sp));
        for (int w = 0; w < subs_.back()->n_workers; ++w) {
            auto slot = std::make_unique<WorkerSlot>();
            slot->node = static_cast<int>(k);
            slot->index = w;
            slot->core_pu = cores_per_node[k][static_cast<size_t>(w)];
            slots_.push_back(std::move(slot));
        }
    }
    binding_.pool_threads = total_workers_ - (options_.caller_participates ? 1 : 0);
    spawn_workers();
    ForkHandlers::add(this);
    if (options_.bind && topology_) {
        if (!binding_.supported)
            DS4_LOG_WARN("placement: this topology (%s) cannot bind threads; %d workers run unbound",
                         topology_->source().c_str(), total_workers_);
        else if (!binding_.all_bound())
            DS4_LOG_WARN("placement: %d of %d worker threads could not be bound to their cores and run unbound",
                         binding_.pool_threads - binding_.bound_workers, binding_.pool_threads);
    }
}

void WorkerPool::spawn_workers() {
    try {
        for (auto& s : slots_) {
            if (is_caller_slot(*s)) continue;
            WorkerSlot* p = s.get();
            s->thread = std::thread([this, p] { worker_main(p); });
        }
    } catch (const std::system_error& e) {
        stop_workers();
        detail::fail(ErrorCode::Internal, "worker pool: cannot start %d worker threads: %s", binding_.pool_threads,
                     e.what());
    } catch (...) {
        stop_workers();
        throw;
    }
    // Wait until every worker has started (and tried to bind).
    int v = started_.load(std::memory_order_acquire);
    while (v != binding_.pool_threads) {
        started_.wait(v, std::memory_order_acquire);
        v = started_.load(std::memory_order_acquire);
    }
    binding_.bound_workers = bound_.load(std::memory_order_acquire);
}

void WorkerPool::stop_workers() noexcept {
    stop_.store(true, std::memory_order_release);
    for (auto& sp : subs_) {
        sp->generation.fetch_add(1, std::memory_order_release);
        sp->generation.notify_all();
    }
    for (auto& s : slots_)
        if (s->thread.joinable()) s->thread.join();
}

// In a forked child the workers do not exist: their thread objects can be
// neither joined nor detached (the ids may be reused by new threads), so
// they are moved to a list that is never destroyed.
void WorkerPool::abandon_workers() noexcept {
    static auto* abandoned = new std::vector<std::thread>();
    for (auto& s : slots_)
        if (s->thread.joinable()) abandoned->push_back(std::move(s->thread));
}

// The child's first run: no run was in progress at fork (the fork handlers
// held the run lock), so the counters only need their idle values.
void WorkerPool::restart_after_fork() {
    abandon_workers();
    for (auto& sp : subs_) {
        sp->pending.store(0, std::memory_order_relaxed);
        sp->cursor.store(0, std::memory_order_relaxed);
    }
    task_ = nullptr;
    error_ = nullptr;
    stop_.store(false, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    nodes_pending_.store(0, std::memory_order_relaxed);
    started_.store(0, std::memory_order_relaxed);
    bound_.store(0, std::memory_order_relaxed);
    spawn_workers();
    forked_ = false;
}

std::unique_lock<std::mutex> WorkerPool::lock_runs() {
    std::unique_lock<std::mutex> lock(run_mutex_);
    if (forked_) restart_after_fork();
    return lock;
}

WorkerPool::~WorkerPool() {
    ForkHandlers::remove(this);
    if (forked_)
        abandon_workers();
    else
        stop_workers();
}

int WorkerPool::workers(int node) const noexcept {
    return node >= 0 && node < n_nodes() ? subs_[static_cast<size_t>(node)]->n_workers : 0;
}

int WorkerPool::node_os_index(int node) const noexcept {
    return node >= 0 && node < n_nodes() ? subs_[static_cast<size_t>(node)]->os_index : -1;
}

int WorkerPool::subpool_of(int os_index) const noexcept {
    for (int k = 0; k < n_nodes(); ++k)
        if (subs_[static_cast<size_t>(k)]->os_index == os_index) return k;
    return -1;
}

int WorkerPool::worker_id(int node, int worker) const noexcept {
    return first_worker_[static_cast<size_t>(node)] + worker;
}

WorkerPoolStats WorkerPool::stats() const noexcept {
    WorkerPoolStats s;
    s.runs = runs_.load(std::memory_order_relaxed);
    s.worker_sleeps = sleeps_.load(std::memory_order_relaxed);
    return s;
}

void WorkerPool::check_node(int node) const {
    if (node < 0 || node >= n_nodes())
        detail::fail(ErrorCode::InvalidArgument, "worker pool: sub-pool %d out of range (%d sub-pools)", node, n_nodes());
}

void WorkerPool::worker_main(WorkerSlot* slot) {
    tl_worker_of = this;
    SubPool& sp = *subs_[static_cast<size_t>(slot->node)];
    {
        char name[16];
        std::snprintf(name, sizeof name, "ds4-n%d-w%d", sp.os_index, slot->index);
        pthread_setname_np(pthread_self(), name);
    }
    if (options_.bind && topology_ && slot->core_pu >= 0 && topology_->cpubind_supported()) {
        if (topology_->bind_thread_to_core(slot->core_pu)) bound_.fetch_add(1, std::memory_order_relaxed);
        (void)topology_->bind_thread_memory(sp.os_index);
    }
    // Runs start after every worker has started (the constructor and a
    // restart after fork wait for it): none is missed.
    uint32_t seen = sp.generation.load(std::memory_order_acquire);
    started_.fetch_add(1, std::memory_order_release);
    started_.notify_all();

    for (;;) {
        uint32_t g = sp.generation.load(std::memory_order_acquire);
        for (int i = 0; g == seen && i < options_.worker_spin; ++i) {
            cpu_relax();
            g = sp.generation.load(std::memory_order_acquire);
        }
        if (g == seen) {
            sleeps_.fetch_add(1, std::memory_order_relaxed);
            do {
                sp.generation.wait(seen, std::memory_order_acquire);
                g = sp.generation.load(std::memory_order_acquire);
            } while (g == seen);
        }
        seen = g;
        if (stop_.load(std::memory_order_acquire)) return;
        execute(sp, slot->index);
        if (sp.pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            if (nodes_pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) nodes_pending_.notify_one();
        }
    }
}

void WorkerPool::execute(SubPool& sp, int worker) {
    const Task& t = *task_;
    const int node = sp.index;
    const int64_t grain = std::max<int64_t>(1, t.grain);
    try {
        if (t.schedule == Schedule::Static) {
            const int64_t units = (sp.n + grain - 1) / grain;
            const int64_t u0 = prefix_share(units, worker, sp.n_workers);
            const int64_t u1 = prefix_share(units, worker + 1, sp.n_workers);
            const int64_t b = u0 * grain, e = std::min(sp.n, u1 * grain);
            if (b < e) t.fn(node, sp.base + b, sp.base + e, worker);
        } else {
            while (!failed_.load(std::memory_order_relaxed)) {
                const int64_t c = sp.cursor.fetch_add(grain, std::memory_order_relaxed);
                if (c >= sp.n) break;
                t.fn(node, sp.base + c, sp.base + std::min(sp.n, c + grain), worker);
            }
        }
    } catch (...) {
        if (!failed_.exchange(true, std::memory_order_acq_rel)) error_ = std::current_exception();
    }
}

bool WorkerPool::is_caller_slot(const WorkerSlot& s) const noexcept {
    return binding_.caller_is_worker && s.node == binding_.caller_node && s.index == 0;
}

void WorkerPool::dispatch(const Task& t) {
    int active = 0;
    for (auto& sp : subs_) {
        if (sp->n <= 0) continue;
        sp->pending.store(sp->n_workers, std::memory_order_relaxed);
        sp->cursor.store(0, std::memory_order_relaxed);
        ++active;
    }
    if (active == 0) {
        runs_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    task_ = &t;
    failed_.store(false, std::memory_order_relaxed);
    nodes_pending_.store(active, std::memory_order_relaxed);
    for (auto& sp : subs_) {
        if (sp->n <= 0) continue;
        sp->generation.fetch_add(1, std::memory_order_release);
        sp->generation.notify_all();
    }
    if (binding_.caller_is_worker) {
        SubPool& sp = *subs_[static_cast<size_t>(binding_.caller_node)];
        if (sp.n > 0) {
            tl_worker_of = this;  // a nested call from the job must fail, not deadlock
            execute(sp, 0);
            tl_worker_of = nullptr;
            if (sp.pending.fetch_sub(1, std::memory_order_acq_rel) == 1)
                nodes_pending_.fetch_sub(1, std::memory_order_acq_rel);
        }
    }
    int v = nodes_pending_.load(std::memory_order_acquire);
    for (int i = 0; v != 0 && i < options_.caller_spin; ++i) {
        cpu_relax();
        v = nodes_pending_.load(std::memory_order_acquire);
    }
    while (v != 0) {
        nodes_pending_.wait(v, std::memory_order_acquire);
        v = nodes_pending_.load(std::memory_order_acquire);
    }
    task_ = nullptr;
    runs_.fetch_add(1, std::memory_order_relaxed);
    if (failed_.load(std::memory_order_acquire)) {
        std::exception_ptr e = std::move(error_);
        error_ = nullptr;
        failed_.store(false, std::memory_order_relaxed);
        std::rethrow_exception(e);
    }
}

namespace {
void check_not_nested(const WorkerPool* self) {
    if (tl_worker_of != nullptr)
        detail::fail(ErrorCode::InvalidArgument, "worker pool: a parallel call from inside a job (worker thread of %s pool)",
                     tl_worker_of == self ? "this" : "another");
}
}  // namespace

void WorkerPool::run_one(int node, int64_t n, const Task& t) {
    check_not_nested(this);
    const auto lock = lock_runs();
    for (size_t k = 0; k < subs_.size(); ++k) {
        subs_[k]->base = 0;
        subs_[k]->n = static_cast<int>(k) == node ? std::max<int64_t>(0, n) : 0;
    }
    dispatch(t);
}

void WorkerPool::run_nodes(std::span<const int64_t> n, const Task& t) {
    check_not_nested(this);
    if (n.size() != subs_.size())
        detail::fail(ErrorCode::InvalidArgument, "worker pool: %zu row counts for %zu sub-pools", n.size(), subs_.size());
    const auto lock = lock_runs();
    for (size_t k = 0; k < subs_.size(); ++k) {
        subs_[k]->base = 0;
        subs_[k]->n = std::max<int64_t>(0, n[k]);
    }
    dispatch(t);
}

void WorkerPool::run_all(int64_t n, const Task& t) {
    check_not_nested(this);
    const auto lock = lock_runs();
    const int64_t grain = std::max<int64_t>(1, t.grain);
    const int64_t units = (std::max<int64_t>(0, n) + grain - 1) / grain;
    int64_t cum = 0;
    for (auto& sp : subs_) {
        const int64_t u0 = prefix_share(units, cum, total_workers_);
        cum += sp->n_workers;
        const int64_t u1 = prefix_share(units, cum, total_workers_);
        const int64_t b = std::min(n, u0 * grain), e = std::min(n, u1 * grain);
        sp->base = b;
        sp->n = std::max<int64_t>(0, e - b);
    }
    dispatch(t);
}

}  // namespace ds4::placement
