package balancer

import (
	"errors"
	"fmt"
)

// ErrInvalidConfig is wrapped by every policy configuration error.
var ErrInvalidConfig = errors.New("invalid load-balancing config")

// ConfigError describes an invalid policy configuration. It wraps
// ErrInvalidConfig.
type ConfigError struct {
	Policy string // registered policy name, such as "wayfinder_p2c_ewma"
	Field  string // JSON field, such as "decay"; empty if the whole document is at fault
	Reason string
}

func (e *ConfigError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %v: %s", e.Policy, ErrInvalidConfig, e.Reason)
	}
	return fmt.Sprintf("%s: %v: field %q: %s", e.Policy, ErrInvalidConfig, e.Field, e.Reason)
}

func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }
