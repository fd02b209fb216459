#!/usr/bin/env bash
# Starts the loopback services the test suite needs (Redis, PostgreSQL, MariaDB) when one is
# down, with the commands of this kind of machine. Prints what it did; never fails by itself:
# the tests report an unreachable service (skip locally, fail when CI is set).
set -u

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do up "$1" && return 0; sleep 0.5; done
  echo "ensure_services: port $1 still closed" >&2
  return 0
}

if ! up 6379; then
  echo "ensure_services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  wait_port 6379
fi
if ! up 5432; then
  echo "ensure_services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  wait_port 5432
fi
if ! up 3306; then
  echo "ensure_services: starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  wait_port 3306
fi
echo "ensure_services: redis $(up 6379 && echo up || echo down), postgres $(up 5432 && echo up || echo down), mariadb $(up 3306 && echo up || echo down)"
