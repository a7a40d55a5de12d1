package handler

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// TestCommandFields: the API engine reads back exactly the fields the
// command builders wrote; a comment's text keeps its ';'.
func TestCommandFields(t *testing.T) {
	del, _ := DelSvcComment("web1!worker!6a1e-42")
	for _, tc := range []struct {
		cmd  Command
		verb string
		want []string
	}{
		{AddSvcComment("web1", "my svc", true, Author, "a; b: c"), "ADD_SVC_COMMENT", []string{"web1", "my svc", "1", Author, "a; b: c"}},
		{ScheduleForcedSvcCheck("web1", "worker", time.Unix(1796150000, 0)), "SCHEDULE_FORCED_SVC_CHECK", []string{"web1", "worker", "1796150000"}},
		{del, "DEL_SVC_COMMENT", []string{"web1!worker!6a1e-42"}},
		{"DEL_ALL_SVC_COMMENTS;web1;worker", "DEL_ALL_SVC_COMMENTS", nil},
	} {
		verb, f := tc.cmd.fields()
		if verb != tc.verb || !reflect.DeepEqual(f, tc.want) {
			t.Errorf("%q: %s %q, want %s %q", tc.cmd, verb, f, tc.verb, tc.want)
		}
	}
}

// TestIcingaEngineRefusesUnknownCommands: a command the API has no action
// for is an error, never sent as something else (DEL_ALL_SVC_COMMENTS
// would delete the humans' comments too).
func TestIcingaEngineRefusesUnknownCommands(t *testing.T) {
	err := IcingaEngine{}.Write(context.Background(), time.Now(), "DEL_ALL_SVC_COMMENTS;web1;worker")
	if err == nil {
		t.Fatal("no error for a command without an API action")
	}
}

func TestDelSvcCommentRefusesBadIDs(t *testing.T) {
	for _, id := range []string{"", "1\n2", string(make([]byte, 600))} {
		if _, ok := DelSvcComment(id); ok {
			t.Errorf("DelSvcComment(%q) accepted", id)
		}
	}
	if c, ok := DelSvcComment("12"); !ok || c != "DEL_SVC_COMMENT;12" {
		t.Errorf("DelSvcComment(12) = %q, %v", c, ok)
	}
}
