// smcheck reads rendered Kubernetes manifests (a YAML stream) and decodes every ServiceMonitor
// strictly into the prometheus-operator's own Go API type (monitoring.coreos.com/v1): a field
// the operator does not know, or a value of the wrong type, is an error. It complements the
// schema check of scripts/check-helm.sh, since kubeconform has no schema for this CRD here.
//
// Usage: smcheck FILE...   (exit 1 on the first invalid ServiceMonitor; prints one line each)
package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

var separator = regexp.MustCompile(`(?m)^---\s*$`)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: smcheck FILE...")
		os.Exit(2)
	}
	failed, seen := 0, 0
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for _, doc := range separator.Split(string(data), -1) {
			if len(bytes.TrimSpace([]byte(doc))) == 0 {
				continue
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				fmt.Printf("invalid YAML in %s: %v\n", path, err)
				failed++
				continue
			}
			if meta.Kind != "ServiceMonitor" {
				continue
			}
			seen++
			if meta.APIVersion != "monitoring.coreos.com/v1" {
				fmt.Printf("%s: ServiceMonitor %s: apiVersion %q, want monitoring.coreos.com/v1\n", path, meta.Metadata.Name, meta.APIVersion)
				failed++
				continue
			}
			var sm monitoringv1.ServiceMonitor
			if err := yaml.UnmarshalStrict([]byte(doc), &sm); err != nil {
				fmt.Printf("%s: ServiceMonitor %s: %v\n", path, meta.Metadata.Name, err)
				failed++
				continue
			}
			if len(sm.Spec.Endpoints) == 0 {
				fmt.Printf("%s: ServiceMonitor %s: no endpoints\n", path, meta.Metadata.Name)
				failed++
				continue
			}
			fmt.Printf("%s: ServiceMonitor %s: valid (%d endpoints)\n", path, sm.Name, len(sm.Spec.Endpoints))
		}
	}
	if failed > 0 || seen == 0 {
		if seen == 0 {
			fmt.Println("no ServiceMonitor found")
		}
		os.Exit(1)
	}
}
