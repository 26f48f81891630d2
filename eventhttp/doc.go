// Package eventhttp serves an event bus over HTTP.
package eventhttp
