package e2e_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"renewals/services/e2e"
)

// TestAuthorizationHeader: the server takes the bearer scheme in any case,
// and refuses a request with two Authorization headers even when one is
// right.
func TestAuthorizationHeader(t *testing.T) {
	s := e2e.Start(t, e2e.Options{Args: []string{"--target", "api"}})
	token := s.Token(t)
	for _, c := range []struct {
		auth []string
		want int
	}{
		{[]string{"bearer " + token}, http.StatusOK},
		{[]string{"BEARER " + token}, http.StatusOK},
		{[]string{"Bearer " + token, "Bearer " + token}, http.StatusBadRequest},
		{[]string{"Bearer " + token, "Bearer nope"}, http.StatusBadRequest},
		{[]string{"Bearer nope"}, http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/notices?subscription_id=410000000001", nil)
		for _, a := range c.auth {
			req.Header.Add("Authorization", a)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error, Code string }
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != c.want || err != nil || (c.want != http.StatusOK && e.Error == "") {
			t.Errorf("%d Authorization headers %q: %d %+v %v, want %d with a JSON error", len(c.auth), c.auth, resp.StatusCode, e, err, c.want)
		}
	}
}
