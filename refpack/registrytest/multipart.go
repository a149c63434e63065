package registrytest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
)

// upload is the push form's content.
type upload struct {
	file     []byte
	filename string
	owner    string
}

// multipartForm reads the push form from the already buffered body; it keeps
// everything in memory because test uploads are small and bounded by the limit.
func multipartForm(body []byte, boundary string) (*upload, error) {
	if boundary == "" {
		return nil, errors.New("multipart/form-data without a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	u := &upload{}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return u, nil
		}
		if err != nil {
			return nil, fmt.Errorf("malformed multipart body: %v", err)
		}
		b, err := io.ReadAll(part)
		if err != nil {
			return nil, fmt.Errorf("malformed multipart body: %v", err)
		}
		switch part.FormName() {
		case "file":
			u.file, u.filename = b, part.FileName()
		case "ownerId":
			u.owner = string(b)
		}
	}
}
