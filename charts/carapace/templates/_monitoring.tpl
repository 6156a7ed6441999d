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

{{/*
Scrape endpoints with the values' interval and scrapeTimeout set on each, when given, and
the values' relabelings and metricRelabelings appended to the endpoint's own. The file's
come first: they make the labels the alerts and dashboards select on (agentrun, job), and a
user's rules may refine those but must not drop them by replacing the list.
*/}}
{{- define "carapace.scrapeEndpoints" -}}
{{- $out := list }}
{{- range .endpoints }}
{{- $e := deepCopy . }}
{{- with $.values.interval }}{{- $_ := set $e "interval" . }}{{- end }}
{{- with $.values.scrapeTimeout }}{{- $_ := set $e "scrapeTimeout" . }}{{- end }}
{{- range $key := list "relabelings" "metricRelabelings" }}
{{- with (get $.values $key) }}
{{- $_ := set $e $key (concat (get $e $key | default list) .) }}
{{- end }}
{{- end }}
{{- $out = append $out $e }}
{{- end }}
{{- toYaml $out }}
{{- end }}
