package api

import (
	"errors"
	"fmt"
	"net/http"

	"renewals/pkg/importer"
	"renewals/pkg/page"
)

// importUsage is POST /api/v1/usage/import: the vendor's seat-usage export
// (CSV or .xlsx) as the body; the query may give as_of (the day of the
// export, default today), sheet, date_format and map (repeated, "their
// column=our field" with the usage fields). It answers the usage report,
// which names no user.
func (s *Server) importUsage(w http.ResponseWriter, r *http.Request) error {
	body := http.MaxBytesReader(w, r.Body, s.MaxImportBytes)
	asOf, err := s.queryDate(r, "as_of")
	if err != nil {
		return err
	}
	o, err := importOptions(r, importer.ParseUsageMap)
	if err != nil {
		return err
	}
	events := s.upsertEvents(r.Context())
	o.TempDir, o.OnUpsert = s.TempDir, events.add
	opts := importer.UsageOptions{Options: o, Store: s.Store, AsOf: asOf}
	report, err := importer.ImportUsage(r.Context(), body, opts)
	evErr := events.wait()
	if errors.Is(err, importer.ErrTooLarge) {
		return errorf(CodeTooLarge, "the usage export is larger than %d bytes: split the file, or start the server with a larger --max-import-bytes (RENEWALS_MAX_IMPORT_BYTES)", s.MaxImportBytes)
	}
	if err != nil {
		if _, ok := errors.AsType[*importer.FileError](err); ok {
			return errorf(CodeUnprocessable, "%v", err)
		}
		return fmt.Errorf("import usage: %w", err)
	}
	if evErr != nil {
		return evErr
	}
	page.WriteJSON(w, http.StatusOK, report)
	return nil
}
