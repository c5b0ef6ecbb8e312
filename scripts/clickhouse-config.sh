# Sourced by scripts/clickhouse.sh and scripts/clickhouse-cluster.sh: the
# configuration of one local ClickHouse 18.16 server (root element <yandex>).

# ch_write_config DIR LOG_LEVEL TCP_PORT HTTP_PORT MAX_MEMORY [EXTRA_XML]:
# DIR/config.xml and DIR/users.xml for a server listening on 127.0.0.1 only,
# its data, logs and users under DIR; EXTRA_XML goes inside <yandex>.
ch_write_config() {
  local d=$1 level=$2 tcp=$3 http=$4 memory=$5 extra=${6:-}
  mkdir -p "$d"/{data,tmp,user_files,format_schemas,log}
  cat >"$d/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>$level</level>
    <log>$d/log/clickhouse-server.log</log>
    <errorlog>$d/log/clickhouse-server.err.log</errorlog>
    <size>10M</size>
    <count>2</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$tcp</tcp_port>
  <http_port>$http</http_port>
  <path>$d/data/</path>
  <tmp_path>$d/tmp/</tmp_path>
  <user_files_path>$d/user_files/</user_files_path>
  <format_schema_path>$d/format_schemas/</format_schema_path>
  <users_config>$d/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>200</max_concurrent_queries>
$extra
</yandex>
XML
  cat >"$d/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>$memory</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
}
