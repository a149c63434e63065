package hydrillatest

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/regmirror/regmirror/hydrilla"
)

var words = []string{
	"apple", "birch", "cobalt", "delta", "ember", "fjord", "garnet", "harbor",
	"indigo", "juniper", "kestrel", "lumen", "maple", "nectar", "onyx", "pebble",
	"quartz", "raven", "sable", "tundra", "umber", "violet", "willow", "yarrow",
}

// patternTemplates cover the pattern forms a mirror's matcher must handle:
// all three wildcard kinds in host and path, http*, explicit ports, ftp,
// trailing slashes and literal paths. %s is the site's domain.
var patternTemplates = []string{
	"https://%s/***",
	"http*://*.%s/**",
	"https://***.%s/a/*",
	"https://www.%s/path/",
	"http://%s:8080/x/***",
	"https://**.%s/***",
	"ftp://%s/pub/***",
	"https://%s/exact/page",
	"http*://%s/***",
	"https://%s/docs/*/",
	"https://%s:443/s/**",
}

// Generate returns a repository of about nMappings sites, the same for the
// same seed. Each site has a mapping and one or two resources, each with one
// to three script files, and a source package whose license and SPDX report
// are the items' source_copyright; some libraries are shared as
// dependencies. About a third of the items have two or three versions (some
// written with a trailing zero, [n, 0], and served at /n), schema majors 1
// and 2 are mixed, and some items carry an unknown field.
func Generate(nMappings int, seed int64) *Repo {
	r := New()
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	word := func() string { return words[rng.IntN(len(words))] }
	script := func(name string) hydrilla.FileRef {
		var b strings.Builder
		fmt.Fprintf(&b, "// %s, generated for regmirror tests\n", name)
		for i, n := 0, 3+rng.IntN(40); i < n; i++ {
			fmt.Fprintf(&b, "document.body.dataset.%s%d = %q;\n", word(), i, word())
		}
		return r.AddScript(name, []byte(b.String()))
	}
	license := r.AddScript("LICENSES/CC0-1.0.txt", []byte("Creative Commons Legal Code\n\nCC0 1.0 Universal\n"))
	extra := func() map[string]string {
		if rng.IntN(4) == 0 {
			return map[string]string{"comment": "an unknown field, " + word()}
		}
		return nil
	}
	// versions returns 1–3 increasing versions; a first version of [n] is
	// sometimes written [n, 0].
	versions := func() []hydrilla.Version {
		n := 1
		if x := rng.IntN(10); x >= 9 {
			n = 3
		} else if x >= 6 {
			n = 2
		}
		var vs []hydrilla.Version
		if rng.IntN(2) == 0 {
			major := 1 + rng.IntN(3)
			for i := 0; i < n; i++ {
				if i == 0 && rng.IntN(2) == 0 {
					vs = append(vs, hydrilla.Version{major, 0})
				} else {
					vs = append(vs, hydrilla.Version{major, i})
				}
			}
		} else {
			y, m := 2021+rng.IntN(3), 1+rng.IntN(12)
			for i := 0; i < n; i++ {
				vs = append(vs, hydrilla.Version{y, m, 1 + i*7 + rng.IntN(7)})
			}
		}
		return vs
	}

	nLibs := max(1, nMappings/10)
	libs := make([]string, nLibs)
	for i := range libs {
		libs[i] = fmt.Sprintf("lib-%s-%d", word(), i)
		src := "libs"
		copyright := []hydrilla.FileRef{license}
		for _, v := range versions() {
			r.AddResource(Resource{
				Identifier: libs[i], LongName: "Library " + libs[i], Version: v,
				Revision: 1 + rng.IntN(2), SchemaMajor: 1 + rng.IntN(2),
				Scripts:         []hydrilla.FileRef{script(fmt.Sprintf("%s-%s.js", libs[i], v))},
				SourceCopyright: copyright, SourceName: src, Extra: extra(),
			})
		}
	}

	tlds := []string{"example", "example.org", "example.com", "test"}
	prevSite := ""
	for i := 0; i < nMappings; i++ {
		site := fmt.Sprintf("site-%s-%d", word(), i)
		domain := fmt.Sprintf("%s%d.%s", word(), i, tlds[rng.IntN(len(tlds))])
		spdx := r.AddScript("report.spdx", []byte("SPDXVersion: SPDX-2.2\nDocumentName: "+site+"\n"))
		copyright := []hydrilla.FileRef{spdx, license}

		resIDs := []string{site + "-fix"}
		if rng.IntN(3) == 0 {
			resIDs = append(resIDs, site+"-extra")
		}
		for _, id := range resIDs {
			var deps []string
			if rng.IntN(2) == 0 {
				deps = []string{libs[rng.IntN(len(libs))]}
			}
			for _, v := range versions() {
				var scripts []hydrilla.FileRef
				for k, n := 0, 1+rng.IntN(3); k < n; k++ {
					scripts = append(scripts, script(fmt.Sprintf("%s-%d.js", id, k)))
				}
				r.AddResource(Resource{
					Identifier: id, LongName: strings.ToUpper(id[:1]) + id[1:], Version: v,
					Revision: 1 + rng.IntN(3), SchemaMajor: 1 + rng.IntN(2),
					Scripts: scripts, SourceCopyright: copyright, Dependencies: deps,
					SourceName: site, Extra: extra(),
				})
			}
		}

		for _, v := range versions() {
			payloads := map[string]string{}
			for _, k := range rng.Perm(len(patternTemplates))[:2+rng.IntN(4)] {
				payloads[fmt.Sprintf(patternTemplates[k], domain)] = resIDs[rng.IntN(len(resIDs))]
			}
			var req []string
			if prevSite != "" && rng.IntN(5) == 0 {
				req = []string{prevSite}
			}
			r.AddMapping(Mapping{
				Identifier: site, LongName: "Fixes for " + domain, Version: v,
				SchemaMajor: 1 + rng.IntN(2), Payloads: payloads,
				SourceCopyright: copyright, RequiredMappings: req,
				SourceName: site, Extra: extra(),
			})
		}
		prevSite = site
	}
	return r
}
