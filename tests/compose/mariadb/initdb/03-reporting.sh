# sourced, as the image sources a .sh that is not executable: its helper is there
docker_process_sql <<< "INSERT INTO items (name) VALUES ('from-sh');"
mariadb -uroot -p"$MARIADB_ROOT_PASSWORD" -e "CREATE DATABASE reporting; GRANT ALL ON reporting.* TO '$MARIADB_USER'@'%';"
