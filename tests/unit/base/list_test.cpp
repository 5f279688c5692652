// base/list.h: the intrusive list, with both ends and head-only, and the
// head-only variant whose empty head is a sentinel (the small heaps' avail
// lists: front() is never null).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/list.h"

namespace {

using namespace remalloc;

struct Node {
  int id = 0;
  Node* next = nullptr;
  Node* prev = nullptr;
};

Node g_none{-1};

using Full = IntrusiveList<Node, &Node::next, &Node::prev>;
using HeadOnly = IntrusiveList<Node, &Node::next, &Node::prev, false>;
using Sentinel = IntrusiveList<Node, &Node::next, &Node::prev, false, &g_none>;

template <class L>
std::vector<int> ids(const L& l) {
  std::vector<int> v;
  for (Node* n = l.first(); n; n = n->next) v.push_back(n->id);
  return v;
}

[[noreturn]] void fail(const char* what, const Node*) { throw std::string(what); }

template <class L>
void check(const L& l) {
  l.validate(fail, [](const Node*) {});
}

TEST(IntrusiveList, FullListKeepsEndsAndCount) {
  Node a{1}, b{2}, c{3};
  Full l;
  l.push_back(&a);
  l.push_front(&b);
  l.insert_after(&a, &c);
  EXPECT_EQ(ids(l), (std::vector<int>{2, 1, 3}));
  EXPECT_EQ(l.back(), &c);
  EXPECT_EQ(l.size(), 3u);
  check(l);
  l.remove(&c);
  EXPECT_EQ(l.back(), &a);
  l.remove(&b);
  l.remove(&a);
  EXPECT_TRUE(l.empty());
  EXPECT_EQ(l.front(), nullptr);
  EXPECT_EQ(a.next, nullptr);
  EXPECT_EQ(a.prev, nullptr);
  check(l);
}

TEST(IntrusiveList, SentinelHeadStandsForNone) {
  Sentinel l;
  EXPECT_TRUE(l.empty());
  EXPECT_EQ(l.front(), &g_none) << "an empty list's front is the sentinel, never null";
  EXPECT_EQ(l.first(), nullptr);
  Node a{1}, b{2}, c{3};
  l.push_front(&a);
  EXPECT_EQ(a.next, nullptr) << "the sentinel is never linked in";
  l.insert_after(l.front(), &b);  // second, as the avail lists insert
  l.push_front(&c);
  EXPECT_EQ(ids(l), (std::vector<int>{3, 1, 2}));
  EXPECT_FALSE(l.contains(&g_none));
  check(l);
  l.remove(&c);
  EXPECT_EQ(l.front(), &a);
  l.remove(&b);
  l.remove(&a);
  EXPECT_TRUE(l.empty());
  EXPECT_EQ(l.front(), &g_none) << "removing the last element puts the sentinel back";
  check(l);
}

TEST(IntrusiveList, ValidateFindsBrokenLinks) {
  Node a{1}, b{2};
  HeadOnly l;
  l.push_front(&b);
  l.push_front(&a);
  check(l);
  b.prev = nullptr;  // a stray write
  EXPECT_THROW(check(l), std::string);
  b.prev = &a;
  Node d{4};
  Sentinel s;
  s.push_front(&d);  // a valid list of one
  check(s);
  d.next = &g_none;  // the sentinel linked in
  EXPECT_THROW(check(s), std::string);
  d.next = nullptr;
}

}  // namespace
