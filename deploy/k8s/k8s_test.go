// Package k8s_test renders deploy/k8s with kustomize's own library and
// checks what every pod of renewals needs.
package k8s_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"renewals/pkg/config"
)

// render builds the kustomization in dir as `kubectl kustomize dir` would.
func render(t *testing.T, dir string) []map[string]any {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []map[string]any
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// at walks m by keys and list indexes.
func at(m any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			mm, ok := m.(map[string]any)
			if !ok {
				return nil
			}
			m = mm[k]
		case int:
			l, ok := m.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			m = l[k]
		}
	}
	return m
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// secretKeys are what the Secret must hold and the ConfigMap must not.
var secretKeys = []string{"RENEWALS_API_TOKEN", "RENEWALS_REDIS_URL", "RENEWALS_SMTP_URL"}

// passwordInURL matches a URL with a password in it (scheme://user:pass@).
var passwordInURL = regexp.MustCompile(`://[^/@\s]*:[^/@\s]+@`)

func check(t *testing.T, dir string, replicas map[string]int) {
	res := render(t, dir)
	byKind := map[string][]map[string]any{}
	for _, r := range res {
		byKind[str(r["kind"])] = append(byKind[str(r["kind"])], r)
	}
	deployed := map[string]int{}
	for _, d := range byKind["Deployment"] {
		name := str(at(d, "metadata", "name"))
		pod := at(d, "spec", "template", "spec")
		containers, _ := at(pod, "containers").([]any)
		if len(containers) == 0 {
			t.Errorf("%s: Deployment %s has no containers", dir, name)
		}
		podUser := at(pod, "securityContext", "runAsUser")
		podNonRoot := at(pod, "securityContext", "runAsNonRoot") == true
		for i := range containers {
			c := at(containers, i)
			where := fmt.Sprintf("%s: %s container %s", dir, name, str(at(c, "name")))
			if p := str(at(c, "livenessProbe", "httpGet", "path")); p != "/healthz" {
				t.Errorf("%s: liveness probe on %q, want /healthz", where, p)
			}
			if p := str(at(c, "readinessProbe", "httpGet", "path")); p != "/readyz" {
				t.Errorf("%s: readiness probe on %q, want /readyz", where, p)
			}
			if at(c, "resources", "requests", "cpu") == nil || at(c, "resources", "requests", "memory") == nil {
				t.Errorf("%s: no CPU and memory requests", where)
			}
			user := at(c, "securityContext", "runAsUser")
			if user == nil {
				user = podUser
			}
			if !(podNonRoot || at(c, "securityContext", "runAsNonRoot") == true) || user == nil || str(user) == "0" {
				t.Errorf("%s: not a non-root user (runAsNonRoot and a runAsUser other than 0)", where)
			}
			if at(c, "securityContext", "readOnlyRootFilesystem") != true {
				t.Errorf("%s: root file system not read-only", where)
			}
			if at(c, "securityContext", "allowPrivilegeEscalation") != false {
				t.Errorf("%s: privilege escalation not disallowed", where)
			}
			args, _ := at(c, "args").([]any)
			for j, a := range args {
				if a == "--target" && j+1 < len(args) {
					deployed[str(args[j+1])] = int(at(d, "spec", "replicas").(int))
				}
			}
		}
	}
	for _, target := range config.Targets {
		if _, ok := deployed[target]; !ok {
			t.Errorf("%s: no Deployment runs the target %s", dir, target)
		}
	}
	for target, n := range replicas {
		if got, ok := deployed[target]; !ok || got != n {
			t.Errorf("%s: target %s has %d replicas (deployed: %v), want %d", dir, target, got, ok, n)
		}
	}
	for _, kind := range []string{"Service", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap", "Secret"} {
		if len(byKind[kind]) == 0 {
			t.Errorf("%s: no %s", dir, kind)
		}
	}
	if len(byKind["PodDisruptionBudget"]) != len(byKind["Deployment"]) {
		t.Errorf("%s: %d PodDisruptionBudgets for %d Deployments", dir, len(byKind["PodDisruptionBudget"]), len(byKind["Deployment"]))
	}

	secret := map[string]string{}
	for _, s := range byKind["Secret"] {
		for _, field := range []string{"stringData", "data"} {
			if m, ok := at(s, field).(map[string]any); ok {
				for k, v := range m {
					secret[k] = str(v)
				}
			}
		}
	}
	for _, k := range secretKeys {
		if _, ok := secret[k]; !ok {
			t.Errorf("%s: the Secret holds no %s", dir, k)
		}
	}
	for _, cm := range byKind["ConfigMap"] {
		data, _ := at(cm, "data").(map[string]any)
		for k, v := range data {
			switch {
			case slices.Contains(secretKeys, k):
				t.Errorf("%s: the ConfigMap holds %s, which is secret", dir, k)
			case strings.Contains(k, "TOKEN") || strings.Contains(k, "SECRET") || strings.Contains(k, "PASSWORD"):
				t.Errorf("%s: the ConfigMap holds %s, by its name a secret", dir, k)
			case passwordInURL.MatchString(str(v)):
				t.Errorf("%s: the ConfigMap's %s has a password in its URL", dir, k)
			}
			if !slices.Contains(config.Variables, k) {
				t.Errorf("%s: the ConfigMap sets %s, which renewals does not read", dir, k)
			}
		}
	}
	for k := range secret {
		if !slices.Contains(config.Variables, k) {
			t.Errorf("%s: the Secret sets %s, which renewals does not read", dir, k)
		}
	}
}

// TestBase: the base has every target with the replicas of a production
// cluster, each pod probed, requested, non-root and read-only, and the
// secrets in the Secret only.
func TestBase(t *testing.T) {
	check(t, "base", map[string]int{"scheduler": 2, "notifier": 3, "calllist": 1, "api": 2, "bounces": 2})
	var keda bool
	for _, r := range render(t, "base") {
		if r["kind"] == "ScaledObject" && at(r, "spec", "scaleTargetRef", "name") == "renewals-notifier" &&
			at(r, "spec", "triggers", 0, "metadata", "consumer") == "notifier" {
			keda = true
		}
	}
	if !keda {
		t.Error("base: no KEDA ScaledObject scaling renewals-notifier on its consumer")
	}
}

// TestTrialOverlay: the single-node trial keeps every check, with one
// replica of each target, one stream replica, and no KEDA.
func TestTrialOverlay(t *testing.T) {
	check(t, "overlays/trial", map[string]int{"scheduler": 1, "notifier": 1, "calllist": 1, "api": 1, "bounces": 1})
	for _, r := range render(t, "overlays/trial") {
		if r["kind"] == "ScaledObject" {
			t.Error("trial: a KEDA ScaledObject is left")
		}
		if r["kind"] == "ConfigMap" && at(r, "data", "RENEWALS_REPLICAS") != "1" {
			t.Errorf("trial: RENEWALS_REPLICAS %v, want 1", at(r, "data", "RENEWALS_REPLICAS"))
		}
	}
}
