// falseshare: threads writing to their own small blocks. Three phases, each
// timed on its own:
//  - active: every thread allocates a small block and hammers it; an
//    allocator that puts blocks of different threads on one cache line makes
//    the line bounce between cores;
//  - passive: the main thread allocates one small block per thread in a row
//    (likely on one cache line) and hands them out; each thread frees its
//    block and allocates a new one of the same size, which an allocator may
//    hand back from the same line;
//  - locality: every thread builds a linked list of small nodes and walks it
//    repeatedly, writing each node; nodes an allocator lays out contiguously
//    are walked faster.
#include <atomic>
#include <thread>
#include <vector>

#include "common.h"

namespace {

constexpr size_t kObj = 16;

// Increment the first word `writes` times through a volatile pointer so
// every write reaches memory.
void hammer(void* p, size_t writes) {
  volatile uint64_t* w = static_cast<volatile uint64_t*>(p);
  for (size_t i = 0; i < writes; i++) *w = *w + 1;
}

struct Node {
  Node* next;
  uint64_t value;
  uint64_t pad[2];  // 32-byte nodes
};

template <class F>
double run_threads(int T, F&& body) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> th;
  for (int t = 0; t < T; t++)
    th.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      body(t);
    });
  while (ready.load() < T) std::this_thread::yield();
  double t0 = wl::now();
  go.store(true, std::memory_order_release);
  for (auto& x : th) x.join();
  return wl::now() - t0;
}

}  // namespace

int main(int argc, char** argv) {
  wl::Args a = wl::parse_args(argc, argv);
  const int T = a.threads;
  const size_t rounds = wl::pick<size_t>(a, 20, 200, 1000);
  const size_t writes = wl::pick<size_t>(a, 20000, 600000, 2000000);
  const size_t nodes = wl::pick<size_t>(a, 5000, 100000, 500000);
  const size_t walks = wl::pick<size_t>(a, 4, 100, 200);

  // active false sharing
  double active = run_threads(T, [&](int) {
    for (size_t r = 0; r < rounds; r++) {
      void* p = wl::xmalloc(kObj);
      memset(p, 0, kObj);
      hammer(p, writes);
      uint64_t v;
      memcpy(&v, p, 8);
      if (v != writes) wl::die("active counter", p, kObj, 0);
      free(p);
    }
  });

  // passive false sharing
  std::vector<void*> given(static_cast<size_t>(T));
  for (auto& p : given) { p = wl::xmalloc(kObj); wl::fill(p, kObj); }
  double passive = run_threads(T, [&](int t) {
    void* p = given[static_cast<size_t>(t)];
    wl::check(p, kObj);
    free(p);
    for (size_t r = 0; r < rounds; r++) {
      p = wl::xmalloc(kObj);
      memset(p, 0, kObj);
      hammer(p, writes);
      uint64_t v;
      memcpy(&v, p, 8);
      if (v != writes) wl::die("passive counter", p, kObj, 0);
      free(p);
    }
  });

  // locality of small nodes
  double locality = run_threads(T, [&](int t) {
    Node* head = nullptr;
    for (size_t i = 0; i < nodes; i++) {
      Node* n = static_cast<Node*>(wl::xmalloc(sizeof(Node)));
      n->next = head;
      n->value = 0;
      head = n;
    }
    for (size_t w = 0; w < walks; w++)
      for (Node* n = head; n; n = n->next) n->value += static_cast<uint64_t>(t) + 1;
    while (head) {
      Node* n = head->next;
      if (head->value != walks * (static_cast<uint64_t>(t) + 1)) wl::die("node value", head, sizeof(Node), 8);
      free(head);
      head = n;
    }
  });

  wl::Result("falseshare", a)
      .num("region_seconds", active + passive + locality)
      .num("active_seconds", active)
      .num("passive_seconds", passive)
      .num("locality_seconds", locality)
      .print();
  return 0;
}
