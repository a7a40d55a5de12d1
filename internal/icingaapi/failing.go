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
	// LastStateChange is the fault id (FaultID's float), LastHardChange
	// when it turned HARD.
	LastStateChange float64
	LastHardChange  time.Time
}

// FaultID is $service.last_state_change$ as the EventCommand passes it.
func (s FailingService) FaultID() string {
	return Service{LastStateChange: s.LastStateChange}.FaultID()
}

// failingFilter is constant: the values are filter_vars. A service on a
// DOWN host, in downtime or acknowledged is held by its own rule, not a
// sign of a storm.
const failingFilter = `service.state == 2 && service.state_type == 1 && service.downtime_depth == 0 && ` +
	`service.acknowledgement == 0 && host.state == 0 && service.last_hard_state_change >= selfheal_since && ` +
	`service.event_command == selfheal_event_command`

// Failing returns the zone's services whose event command is
// eventCommand that are HARD CRITICAL now (no downtime, no
// acknowledgement, host UP) and turned HARD at or after since: one
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
		"attrs":       []string{"last_state_change", "last_hard_state_change"},
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
				LastStateChange float64 `json:"last_state_change"`
				LastHardChange  float64 `json:"last_hard_state_change"`
			} `json:"attrs"`
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, &Error{Op: op, Code: 200, Status: "service: " + err.Error(), Kind: ErrResponse}
		}
		host, name, ok := strings.Cut(o.Name, "!")
		if !ok || host == "" || name == "" {
			return nil, &Error{Op: op, Code: 200, Status: "service name " + clip(o.Name, 80) + " is not host!service", Kind: ErrResponse}
		}
		out = append(out, FailingService{Host: host, Name: name, LastStateChange: o.Attrs.LastStateChange,
			LastHardChange: floatTime(o.Attrs.LastHardChange)})
	}
	return out, nil
}
