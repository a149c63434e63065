package refpack

import "encoding/json"

// Error titles and fixed messages of the registry's {"error","message"} bodies, as
// the seed document and refpack.md give them, so the mirror's own answers match
// the upstream's byte for byte.
const (
	// ErrTitlePackageNotFound is the 404 title for an unknown package or version.
	ErrTitlePackageNotFound = "Package not found"
	// ErrTitleFileNotFound is the 404 title for a document the package lacks.
	ErrTitleFileNotFound = "File not found"
	// ErrTitleInvalidVersion is the 400 title for a version that is not SemVer.
	ErrTitleInvalidVersion = "Invalid version format"
	// ErrTitleValidationFailed is the 400 title for an invalid upload.
	ErrTitleValidationFailed = "Package validation failed"
	// ErrTitleUnauthorized is the 401 title for a missing or wrong key.
	ErrTitleUnauthorized = "Unauthorized"
	// MsgInvalidVersion is the message that goes with ErrTitleInvalidVersion.
	MsgInvalidVersion = "Version must be a valid SemVer string"
	// MsgValidationFailed is the seed's message that goes with ErrTitleValidationFailed.
	MsgValidationFailed = "The package does not conform to RefPack specification or validation failed"
	// MsgUnauthorized is the message that goes with ErrTitleUnauthorized.
	MsgUnauthorized = "API key is missing or invalid."
)

// Content types of the registry's answers.
const (
	// ContentTypeJSON is the Content-Type of every JSON answer.
	ContentTypeJSON = "application/json; charset=utf-8"
	// ContentTypeMarkdown is the Content-Type of /readme.
	ContentTypeMarkdown = "text/markdown; charset=utf-8"
	// ContentTypeZip is the Content-Type of every zip answer; the RefWire CLI
	// refuses a download without it.
	ContentTypeZip = "application/zip"
)

// errorBody fixes the key order ("error" first) the registry uses.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// ErrorBody returns the registry's error body {"error":errTitle,"message":message}.
func ErrorBody(errTitle, message string) []byte {
	b, err := json.Marshal(errorBody{Error: errTitle, Message: message})
	if err != nil {
		// Marshalling two strings cannot fail.
		panic(err)
	}
	return b
}

// PackageNotFoundMessage is the registry's 404 message; version "" means latest.
func PackageNotFoundMessage(id, version string) string {
	if version == "" {
		version = "latest"
	}
	return "Package '" + id + "' version '" + version + "' was not found"
}

// FileNotFoundMessage is the 404 message for a document the package lacks.
func FileNotFoundMessage(id, version, fileName string) string {
	return "Package '" + id + "' version '" + version + "' does not contain " + fileName
}
