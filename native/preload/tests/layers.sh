#!/bin/sh
# The preload's source files form layers: a file calls only files on rows below its own in the
# picture under "## Files" in README.md. This reads who calls whom from the objects themselves (nm:
# the global symbols each object defines, the ones it leaves undefined) and fails, naming the files
# and the calls, when files call each other in a circle, when a call goes up or sideways in the
# picture, or when the picture and the objects name different files. -v prints the layers the
# calls alone imply.
#
#   tests/layers.sh [-v] [OBJECT...]     (default: build/obj/*.o; `make tests` runs it)
set -eu

here=$(dirname "$0")
verbose=0
if [ "${1:-}" = -v ]; then
  verbose=1
  shift
fi
[ $# -gt 0 ] || set -- "$here"/../build/obj/*.o
command -v nm >/dev/null || { echo "layers.sh: nm not found (binutils)" >&2; exit 2; }
for o; do
  [ -f "$o" ] || { echo "layers.sh: $o: no such object (make all first)" >&2; exit 2; }
done

{
  # "R row file": the picture, top row first (file names without directory or .c).
  awk '/^## Files/ { files = 1; next }
       files && /^```/ { if (inside) exit; inside = 1; next }
       inside { row++; for (i = 1; i <= NF; i++) if ($i ~ /\.c$/) { n = split($i, p, "/"); sub(/\.c$/, "", p[n]); print "R", row, p[n] } }' \
    "$here"/../README.md
  # "D file sym": file defines sym; "U file sym": file uses sym.
  for o; do
    f=$(basename "$o" .o)
    nm --defined-only -g "$o" | awk -v f="$f" 'NF == 3 { print "D", f, $3 }'
    nm --undefined-only "$o" | awk -v f="$f" '{ print "U", f, $NF }'
  done
} | awk -v verbose="$verbose" -v nfiles="$#" '
$1 == "R" { row[$3] = $2 + 0; next }
$1 == "D" { def[$3] = $2; file[$2] = 1; next }
$1 == "U" { file[$2] = 1; nu++; ufile[nu] = $2; usym[nu] = $3 }

function err(msg) { print "layers.sh: " msg > "/dev/stderr"; bad = 1 }

# Depth-first search; a callee still on the stack closes a cycle.
function visit(f,    n, callees, i, g, j, msg) {
  color[f] = 1
  path[++depth] = f
  n = split(adj[f], callees, " ")
  for (i = 1; i <= n; i++) {
    g = callees[i]
    if (color[g] == 1) {
      msg = ""
      for (j = depth; path[j] != g; j--) {}
      for (; j <= depth; j++) msg = msg path[j] " -> "
      err("call cycle: " msg g)
      for (j = depth; path[j] != g; j--) {}
      for (; j < depth; j++) print "  " path[j] ".o calls " path[j + 1] ".o: " via[path[j], path[j + 1]] > "/dev/stderr"
      print "  " f ".o calls " g ".o: " via[f, g] > "/dev/stderr"
      cycles = 1
    } else if (color[g] == 0) {
      visit(g)
    }
  }
  depth--
  color[f] = 2
}

# Layer of f by its calls alone: 0 when it calls no other file, else one above the highest it calls.
function level(f,    n, callees, i, l, top) {
  if (f in lvl) return lvl[f]
  top = 0
  n = split(adj[f], callees, " ")
  for (i = 1; i <= n; i++) {
    l = level(callees[i]) + 1
    if (l > top) top = l
  }
  return lvl[f] = top
}

END {
  for (i = 1; i <= nu; i++) {
    f = ufile[i]
    g = def[usym[i]]
    if (g == "" || g == f) continue
    if (!((f, g) in via)) {
      via[f, g] = usym[i]
      adj[f] = adj[f] " " g
      nedges++
    } else if (length(via[f, g]) < 60) {
      via[f, g] = via[f, g] ", " usym[i]
    } else if (via[f, g] !~ /\.\.\.$/) {
      via[f, g] = via[f, g] ", ..."
    }
  }
  if (nfiles > 1 && nedges == 0) {
    print "layers.sh: no calls between the objects found: is nm reading them?" > "/dev/stderr"
    exit 2
  }
  for (f in file) if (!color[f]) visit(f)
  if (cycles) print "  each file may call only files below it: move what two files both need into a file below both." > "/dev/stderr"

  # The picture in README.md
  if (!length(row)) err("no layer picture found under \"## Files\" in README.md")
  for (f in file) if (length(row) && !(f in row)) err(f ".c is not in the layer picture of README.md (\"## Files\")")
  for (f in row) if (!(f in file)) err("README.md'"'"'s layer picture names " f ".c, which has no object here")
  for (k in via) {
    split(k, fg, SUBSEP)
    f = fg[1]
    g = fg[2]
    if ((f in row) && (g in row) && row[f] >= row[g])
      err("README.md puts " g ".c " (row[f] == row[g] ? "beside" : "above") " " f ".c, but " f ".o calls " g ".o: " via[f, g])
  }
  if (bad) exit 1

  if (!verbose) exit 0
  top = 0
  for (f in file) if (level(f) > top) top = level(f)
  for (l = top; l >= 0; l--) {
    n = 0
    for (f in file) if (lvl[f] == l) names[++n] = f
    for (i = 2; i <= n; i++) for (j = i; j > 1 && names[j - 1] > names[j]; j--) { t = names[j]; names[j] = names[j - 1]; names[j - 1] = t }
    line = ""
    for (i = 1; i <= n; i++) line = line " " names[i]
    printf "%2d:%s\n", l, line
  }
}'
