#!/usr/bin/env bash
# git doing real work (init, many commits, log, gc, fsck) with remalloc
# preloaded; every output equals the one of the same session without it.
source "$(dirname "$0")/common.sh" "$@"
command -v git >/dev/null || fail "git not installed"

session() {  # session DIR: runs the scripted git session, prints its output
  local dir=$1
  export GIT_AUTHOR_NAME=T GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=T GIT_COMMITTER_EMAIL=t@example.com
  export GIT_CONFIG_NOSYSTEM=1 HOME="$dir/home" GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
  mkdir -p "$dir/home" "$dir/repo"
  cd "$dir/repo"
  $RUN git init -q -b main .
  $RUN git config gc.auto 0
  mkdir -p d0 d1 d2 d3 d4 d5 d6
  for c in $(seq 1 8); do
    # 40 files in 7 directories, every line changed by each commit (one awk
    # per commit: the time goes to git, not to spawning generators).
    awk -v c="$c" 'BEGIN { for (f = 1; f <= 40; f++) { out = "d" (f % 7) "/file" f ".txt"
      for (i = 0; i < 200 + f * 5; i++) print c, f, i, (i * c * 7919 + f) % 1000003 >out; close(out) } }'
    [ $((c % 3)) -eq 0 ] && rm -f "d$((c % 7))/file$c.txt"  # a deletion every third commit
    $RUN git add -A
    GIT_AUTHOR_DATE="2024-01-01T00:$c:00Z" GIT_COMMITTER_DATE="2024-01-01T00:$c:00Z" $RUN git commit -q -m "commit $c"
  done
  $RUN git log --stat --format='%H %s'
  $RUN git diff HEAD~5 HEAD --stat | tail -3
  $RUN git gc -q --aggressive
  $RUN git fsck --full --strict 2>&1
  $RUN git count-objects -v | grep -v size
  $RUN git rev-list --all --objects | sort | sha256sum
  $RUN git archive --format=tar HEAD | sha256sum
}

( RUN=""; session "$TMP/plain" ) >"$TMP/expected" 2>&1 || fail "git session without remalloc failed: $(tail -5 "$TMP/expected")"
( RUN="with_remalloc"; session "$TMP/preloaded" ) >"$TMP/actual" 2>&1 || fail "git session with remalloc failed: $(tail -20 "$TMP/actual")"
compare git "$TMP/expected" "$TMP/actual"
