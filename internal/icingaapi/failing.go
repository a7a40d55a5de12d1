package icingaapi

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// FailingService is one service Failing found.
type FailingService struct {
	Host, Name string
	// LastStateChange is when it turned CRITICAL (SOFT or HARD): the
	// fault id (FaultID's float), and the rule's order.
	LastStateChange float64
}

// FaultID is $service.last_state_change$ as the EventCommand passes it.
func (s FailingService) FaultID() string {
	return Service{LastStateChange: s.LastStateChange}.FaultID()
}

// Since is when it turned CRITICAL.
func (s FailingService) Since() time.Time { return floatTime(s.LastStateChange) }

// failingFilter is constant: the values are filter_vars. A service on a
// DOWN host, in downtime or acknowledged is held by its own rule, not a
// sign of a storm. A host never checked reads as DOWN in Icinga 2 (the
// handler's --host-state is passed only after a check): it counts as UP.
const failingFilter = `service.state == 2 && service.downtime_depth == 0 && service.acknowledgement == 0 && ` +
	`(host.state == 0 || host.last_check_result == null) && service.last_state_change >= selfheal_since && ` +
	`service.event_command == selfheal_event_command`

// Failing returns the zone's services whose event command is
// eventCommand that are CRITICAL now, SOFT or HARD (no downtime, no
// acknowledgement, host UP), and turned CRITICAL at or after since: one
// filtered query, answered from the zone's replicated state by whichever
// endpoint is asked. Needs objects/query/Service and filter-expression
// permission (Icinga 2.17).
func (c *Client) Failing(ctx context.Context, since time.Time, eventCommand string) ([]FailingService, error) {
	op := "query failing services"
	if eventCommand == "" || !utf8.ValidString(eventCommand) {
		return nil, requestError(op, errors.New("need the event command's name (valid UTF-8)"))
	}
	body := map[string]any{
		"type":        "Service",
		"filter":      failingFilter,
		"filter_vars": map[string]any{"selfheal_since": unixFloat(since), "selfheal_event_command": eventCommand},
		"attrs":       []string{"state", "last_state_change"},
	}
	res, err := c.call(ctx, op, "/v1/objects/services", true, body, maxQueryBody)
	if err != nil {
		return nil, err
	}
	out := make([]FailingService, 0, len(res))
	for _, raw := range res {
		var o struct {
			Name  string `json:"name"`
			Attrs struct {
				State           *float64 `json:"state"`
				LastStateChange float64  `json:"last_state_change"`
			} `json:"attrs"`
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, &Error{Op: op, Code: 200, Status: "service: " + err.Error(), Kind: ErrResponse}
		}
		host, name, ok := strings.Cut(o.Name, "!")
		if !ok || host == "" || name == "" {
			return nil, &Error{Op: op, Code: 200, Status: "service name " + clip(o.Name, 80) + " is not host!service", Kind: ErrResponse}
		}
		if o.Attrs.State == nil {
			return nil, &Error{Op: op, Code: 200, Status: "service " + clip(o.Name, 80) + " without its state", Kind: ErrResponse}
		}
		// Icinga matches the filter and reads the attributes apart: a
		// service that recovered in between comes back with its
		// recovery's time as when it failed (the scale lab's HA zone,
		// while the other endpoint's restarts healed services). To the
		// zone rule that was a new failure.
		if *o.Attrs.State != 2 {
			continue
		}
		out = append(out, FailingService{Host: host, Name: name, LastStateChange: o.Attrs.LastStateChange})
	}
	return out, nil
}
