# Sourced by the benchmarks that need a Hydrilla repository served as static
# files (sync.sh, cold.sh, bigmem.sh): the upstream that costs nothing beyond
# reading its files, so what is measured is regmirror.
#
#   start_static WORK REPO PORT LOG   write WORK/nginx/nginx.conf serving REPO on
#                                     127.0.0.1:PORT and start nginx in the
#                                     background (its output to LOG); its pid is
#                                     left in STATIC_PID

start_static() {
	local work=$1 repo=$2 port=$3 logfile=$4
	local nginx
	nginx=$(command -v nginx || echo /usr/sbin/nginx)
	[[ -x $nginx ]] || { echo "nginx is needed (apt-get install nginx-light)" >&2; return 1; }
	mkdir -p "$work/nginx/logs"
	cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
error_log $work/nginx/logs/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/json;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$port;
        root $repo;
        location / { try_files \$uri =404; }
    }
}
EOF
	"$nginx" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' >"$logfile" 2>&1 &
	STATIC_PID=$!
}
