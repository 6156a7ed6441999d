{{/*
The spec of a Prometheus Operator object of deploy/monitoring (files/monitoring in the
chart), so that the chart scrapes as `kubectl apply -k deploy/monitoring` does.
Fails when the file is missing or has no spec.
*/}}
{{- define "carapace.monitoringSpec" -}}
{{- $path := printf "files/monitoring/%s" .file }}
{{- $doc := .root.Files.Get $path | fromYaml }}
{{- if or (not $doc) $doc.Error (not $doc.spec) }}
{{- fail (printf "%s (deploy/monitoring) is missing or has no spec" $path) }}
{{- end }}
{{- toYaml $doc.spec }}
{{- end }}

{{/* Scrape endpoints with the values' interval and scrapeTimeout set on each, when given. */}}
{{- define "carapace.scrapeEndpoints" -}}
{{- $out := list }}
{{- range .endpoints }}
{{- $e := deepCopy . }}
{{- with $.values.interval }}{{- $_ := set $e "interval" . }}{{- end }}
{{- with $.values.scrapeTimeout }}{{- $_ := set $e "scrapeTimeout" . }}{{- end }}
{{- $out = append $out $e }}
{{- end }}
{{- toYaml $out }}
{{- end }}
