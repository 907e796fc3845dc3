package api

// pageRoutes registers the confirmation web page (GET/POST /c/{token}).
func (s *ConfirmServer) pageRoutes() {}
