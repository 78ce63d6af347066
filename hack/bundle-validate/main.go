// Command bundle-validate checks an OLM bundle directory with operator-framework's own
// validators, as `operator-sdk bundle validate` does, without operator-sdk or a container engine.
//
//	cd hack/bundle-validate && go run . ../../bundle
//
// It prints every error and warning and exits 1 when there is an error (2 when the bundle
// cannot be loaded at all). The operator-framework/api version is the one in go.mod.
package main

import (
	"fmt"
	"os"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
)

func main() {
	dir := "bundle"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	bundle, err := manifests.GetBundleFromDir(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bundle-validate: cannot load %s: %v\n", dir, err)
		os.Exit(2)
	}
	errorCount, warningCount := 0, 0
	// AllValidators includes DefaultBundleValidators (CSV, CRD, bundle) plus the OperatorHub,
	// object, operator-group and community checks.
	for _, result := range validation.AllValidators.Validate(bundle.ObjectsToValidate()...) {
		for _, e := range result.Errors {
			fmt.Printf("ERROR %s: %s\n", result.Name, e.Error())
			errorCount++
		}
		for _, w := range result.Warnings {
			fmt.Printf("WARN  %s: %s\n", result.Name, w.Error())
			warningCount++
		}
	}
	fmt.Printf("bundle-validate: %s (CSV %s): %d error(s), %d warning(s)\n",
		dir, bundle.CSV.GetName(), errorCount, warningCount)
	if errorCount > 0 {
		os.Exit(1)
	}
}
