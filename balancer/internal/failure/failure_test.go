package failure

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		err               error
		kind              Kind
		penalised, ejects bool
	}{
		{nil, None, false, false},
		{status.Error(codes.OK, ""), None, false, false},
		{status.Error(codes.Canceled, ""), None, false, false},
		{status.Error(codes.Unknown, ""), Broken, true, true},
		{status.Error(codes.InvalidArgument, ""), None, false, false},
		{status.Error(codes.DeadlineExceeded, ""), TimedOut, false, true},
		{status.Error(codes.NotFound, ""), None, false, false},
		{status.Error(codes.AlreadyExists, ""), None, false, false},
		{status.Error(codes.PermissionDenied, ""), None, false, false},
		{status.Error(codes.ResourceExhausted, ""), Overloaded, true, false},
		{status.Error(codes.FailedPrecondition, ""), None, false, false},
		{status.Error(codes.Aborted, ""), None, false, false},
		{status.Error(codes.OutOfRange, ""), None, false, false},
		{status.Error(codes.Unimplemented, ""), None, false, false},
		{status.Error(codes.Internal, ""), Broken, true, true},
		{status.Error(codes.Unavailable, ""), Broken, true, true},
		{status.Error(codes.DataLoss, ""), Broken, true, true},
		{status.Error(codes.Unauthenticated, ""), None, false, false},
		// A plain error has code UNKNOWN, as grpc reports it.
		{errors.New("boom"), Broken, true, true},
		// status.Code does not see through context errors.
		{context.DeadlineExceeded, Broken, true, true},
	} {
		if k := Of(tc.err); k != tc.kind {
			t.Errorf("Of(%v) = %v, want %v", tc.err, k, tc.kind)
		}
		if p := Penalised(tc.err); p != tc.penalised {
			t.Errorf("Penalised(%v) = %v, want %v", tc.err, p, tc.penalised)
		}
		if e := Ejects(tc.err); e != tc.ejects {
			t.Errorf("Ejects(%v) = %v, want %v", tc.err, e, tc.ejects)
		}
	}
}
