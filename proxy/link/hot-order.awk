# Orders the symbols of a link by proxy/hot-symbols.txt:
#
#   awk -f hot-order.awk hot-symbols.txt NAMES    rank <TAB> name, for NAMES listed
#
# A name the list holds exactly is taken as it is. The list comes from one
# build, though, and a symbol's name carries hashes that change with the
# profile, the target and every change to the dependency graph, so for a listed
# function no exact name matches, every name with the same key — the name
# without those hashes (the legacy mangling's `17h<hash>E` suffix, v0's crate
# disambiguators) — is taken instead. The legacy key drops generic arguments,
# so that takes every instance of a generic function: the layout loosens, the
# link never fails.
function hot_key(name) {
    sub(/17h[0-9a-f]+E$/, "E", name)
    gsub(/Cs[0-9A-Za-z]*_/, "C_", name)
    return name
}
NR == FNR {
    if (!($0 in exact)) exact[$0] = FNR
    k = hot_key($0)
    if (!(k in rank)) rank[k] = FNR
    next
}
{ names[++n] = $0 }
END {
    for (i = 1; i <= n; i++) {
        if (names[i] in exact) {
            print exact[names[i]] "\t" names[i]
            found[hot_key(names[i])] = 1
        }
    }
    for (i = 1; i <= n; i++) {
        k = hot_key(names[i])
        if (!(names[i] in exact) && (k in rank) && !(k in found)) print rank[k] "\t" names[i]
    }
}
