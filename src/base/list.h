// base: one intrusive doubly-linked list. The links live in the elements
// (two pointer members named by the template), the list holds its head,
// its tail and its length, so push, remove and the ends are O(1) and an
// element can sit on several lists at once through different link pairs.
// Never allocates; constant-initialisable (an empty list is all zeros).
// With kEnds false the list keeps only its head (one pointer: for arrays of
// many lists, such as the page heap's free-run bins), and has no back(),
// size() or push_back().
// With a sentinel kNone (kEnds false only) the head of an empty list is
// kNone instead of null, so front() is never null: the small heaps' avail
// lists, whose fast path reads the current slab's free list without a null
// check (heap.h). The elements' links still end in null; first() is the
// first element or null, for walks.
//
// Invariants (validate() checks them): head->prev and tail->next are null;
// for every element e on the list, e->next->prev == e; walking from the
// head reaches the tail after exactly size() elements. An element is on
// the list iff its prev link is set or it is the head (contains(), O(1));
// remove() clears both links, so an element off every list has null links.
#pragma once
#include <cstddef>
#include <type_traits>

#include "base/base.h"

namespace remalloc {

template <class T, T* T::*Next, T* T::*Prev, bool kEnds = true, T* kNone = nullptr>
class IntrusiveList {
  // A sentinel head goes with head-only lists (kEnds false); GCC cannot
  // compare an extern object's address with null at compile time, so this
  // is said here rather than asserted.
 public:
  constexpr IntrusiveList() = default;

  // The first element; kNone when the list is empty.
  T* front() const { return head_; }
  // The first element, or null when the list is empty.
  T* first() const { return head_ == kNone ? nullptr : head_; }
  T* back() const
    requires kEnds
  {
    return ends_.tail;
  }
  bool empty() const { return head_ == kNone; }
  size_t size() const
    requires kEnds
  {
    return ends_.size;
  }
  static T* next(const T* e) { return e->*Next; }
  static T* prev(const T* e) { return e->*Prev; }

  // O(1): on this list, provided e is on no other list of the same links.
  bool contains(const T* e) const { return e != kNone && (e->*Prev != nullptr || head_ == e); }

  void push_front(T* e) {
    RM_ASSERT_INTERNAL(e != kNone && e->*Next == nullptr && e->*Prev == nullptr && head_ != e);
    T* old = first();
    e->*Prev = nullptr;
    e->*Next = old;
    if (old)
      old->*Prev = e;
    else if constexpr (kEnds)
      ends_.tail = e;
    head_ = e;
    if constexpr (kEnds) ends_.size++;
  }

  void push_back(T* e)
    requires kEnds
  {
    RM_ASSERT_INTERNAL(e->*Next == nullptr && e->*Prev == nullptr && head_ != e);
    e->*Next = nullptr;
    e->*Prev = ends_.tail;
    if (ends_.tail)
      ends_.tail->*Next = e;
    else
      head_ = e;
    ends_.tail = e;
    ends_.size++;
  }

  // Puts e right after `pos`, an element of this list.
  void insert_after(T* pos, T* e) {
    RM_ASSERT_INTERNAL(contains(pos) && e != kNone && e->*Next == nullptr && e->*Prev == nullptr && head_ != e);
    T* n = pos->*Next;
    e->*Prev = pos;
    e->*Next = n;
    pos->*Next = e;
    if (n)
      n->*Prev = e;
    else if constexpr (kEnds)
      ends_.tail = e;
    if constexpr (kEnds) ends_.size++;
  }

  // e must be on this list.
  void remove(T* e) {
    RM_ASSERT_INTERNAL(contains(e));
    T* n = e->*Next;
    T* p = e->*Prev;
    if (p)
      p->*Next = n;
    else
      head_ = n ? n : kNone;
    if (n)
      n->*Prev = p;
    else if constexpr (kEnds)
      ends_.tail = p;
    e->*Next = e->*Prev = nullptr;
    if constexpr (kEnds) {
      RM_ASSERT_INTERNAL(ends_.size > 0);
      ends_.size--;
    }
  }

  // Empties the list without touching the elements (their links are stale).
  void reset() {
    head_ = kNone;
    ends_ = Ends{};
  }

  // Checks the invariants above; `on_error(what, element)` is called (and
  // must not return) on the first violation. `each(e)` is called for every
  // element, to check what the caller's list promises about them.
  template <class OnError, class Each>
  void validate(OnError on_error, Each each) const {
    const T* before = nullptr;
    size_t n = 0;
    if (head_ == nullptr && kNone != nullptr) on_error("list: null head where the sentinel stands for none", head_);
    for (const T* e = first(); e; before = e, e = e->*Next) {
      if (e == kNone) on_error("list: the sentinel is linked in", e);
      if (e->*Prev != before) on_error("list: broken links", e);
      if constexpr (kEnds) {
        if (++n > ends_.size) on_error("list: longer than its count (a cycle?)", e);
      }
      each(e);
    }
    if constexpr (kEnds) {
      if (before != ends_.tail) on_error("list: tail is not the last element", ends_.tail);
      if (n != ends_.size) on_error("list: shorter than its count", head_);
    }
  }

 private:
  struct FullEnds {
    T* tail = nullptr;
    size_t size = 0;
  };
  struct NoEnds {};
  using Ends = std::conditional_t<kEnds, FullEnds, NoEnds>;
  T* head_ = kNone;
  [[no_unique_address]] Ends ends_;
};

}  // namespace remalloc
