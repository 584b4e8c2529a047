//! What the two store backends share: `Store` methods whose SQL and code are the same, and
//! connection-level helpers that differ only in the connection type. Expanded in each backend,
//! so `self.pool`, `self.clock`, the time binding `ts` and the row types are the backend's own
//! (TIMESTAMPTZ on PostgreSQL, RFC 3339 text on SQLite).

macro_rules! shared_store_methods {
    () => {
        async fn get_server(&self, id: ServerId) -> Result<Option<Server>> {
            load(&mut *self.pool.acquire().await?, id).await
        }

        async fn list_servers(
            &self,
            filter: &ServerFilter,
            page: PageRequest,
        ) -> Result<Page<Server>> {
            page_servers(filter.phase, page, |after, n| async move {
                servers(
                    sqlx::query_as::<_, ServerRow>(LIST_SERVERS)
                        .bind(after)
                        .bind(filter.customer_id.as_deref())
                        .bind(filter.kind.map(Kind::as_str))
                        .bind(filter.hostname.as_deref())
                        .bind(filter.vmid.map(i64::from))
                        .bind(n)
                        .fetch_all(&self.pool)
                        .await?,
                )
            })
            .await
        }

        async fn all_server_ids(&self) -> Result<Vec<ServerId>> {
            let ids: Vec<Uuid> = sqlx::query_scalar(ALL_SERVER_IDS)
                .fetch_all(&self.pool)
                .await?;
            Ok(ids.into_iter().map(ServerId).collect())
        }

        /// Allowed while deleting (the API refuses that case first); the phase stays Deleting.
        async fn update_spec(
            &self,
            id: ServerId,
            spec: ServerSpec,
            expected_rv: Option<i64>,
        ) -> Result<(Server, Operation)> {
            self.replace_spec(id, spec, expected_rv, false).await
        }

        async fn update_spec_within_quota(
            &self,
            id: ServerId,
            spec: ServerSpec,
            expected_rv: Option<i64>,
        ) -> Result<(Server, Operation)> {
            self.replace_spec(id, spec, expected_rv, true).await
        }

        async fn write_status(
            &self,
            id: ServerId,
            status: &ServerStatus,
            expected_rv: i64,
            fence: Option<Fence>,
        ) -> Result<Server> {
            let (server, _) = self
                .modify(id, Some(expected_rv), fence, Origin::Controller, |s, _| {
                    s.status = status.clone();
                    None
                })
                .await?;
            Ok(server)
        }

        async fn set_paused(&self, id: ServerId, paused: bool) -> Result<Server> {
            let (server, _) = self
                .modify(id, None, None, Origin::User, |s, _| {
                    s.paused = paused;
                    None
                })
                .await?;
            Ok(server)
        }

        async fn request_reconcile(&self, id: ServerId, retry: bool) -> Result<Server> {
            let (server, _) = self
                .modify(id, None, None, Origin::User, |s, now| {
                    if retry {
                        s.retry_requested_at = Some(now);
                    }
                    None
                })
                .await?;
            Ok(server)
        }

        async fn renew_lease(
            &self,
            id: ServerId,
            holder: &str,
            fence: Fence,
            ttl: Duration,
        ) -> Result<Lease> {
            let expires_at = expiry(self.clock.now(), ttl);
            let done = sqlx::query(RENEW_LEASE)
                .bind(id.0)
                .bind(holder)
                .bind(fence.token)
                .bind(ts(expires_at))
                .execute(&self.pool)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Fenced);
            }
            Ok(lease_of(id, holder, fence.token, expires_at))
        }

        async fn release_lease(&self, id: ServerId, holder: &str, fence: Fence) -> Result<()> {
            sqlx::query(RELEASE_LEASE)
                .bind(id.0)
                .bind(holder)
                .bind(fence.token)
                .bind(ts(self.clock.now()))
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        async fn release_all_leases(&self, holder: &str) -> Result<u64> {
            let done = sqlx::query(RELEASE_ALL_LEASES)
                .bind(holder)
                .bind(ts(self.clock.now()))
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        }

        async fn try_singleton(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
            let now = self.clock.now();
            let got: Option<String> = sqlx::query_scalar(TRY_SINGLETON)
                .bind(name)
                .bind(holder)
                .bind(ts(expiry(now, ttl)))
                .bind(ts(now))
                .fetch_optional(&self.pool)
                .await?;
            Ok(got.is_some())
        }

        async fn release_singleton(&self, name: &str, holder: &str) -> Result<()> {
            sqlx::query(RELEASE_SINGLETON)
                .bind(name)
                .bind(holder)
                .bind(ts(self.clock.now()))
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<Change>> {
            sqlx::query_as::<_, ChangeRow>(CHANGES_SINCE)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(Change::try_from)
                .collect()
        }

        async fn latest_seq(&self) -> Result<i64> {
            Ok(sqlx::query_scalar(LATEST_SEQ).fetch_one(&self.pool).await?)
        }

        async fn get_customer(&self, id: &str) -> Result<Customer> {
            customer(&mut *self.pool.acquire().await?, id, self.clock.now()).await
        }

        async fn upsert_customer(
            &self,
            id: &str,
            quota: Option<Quota>,
            standing: Option<Standing>,
        ) -> Result<Customer> {
            let now = self.clock.now();
            let mut tx = self.write_tx().await?;
            let mut c = customer(&mut tx, id, now).await?;
            c.quota = quota.unwrap_or(c.quota);
            c.standing = standing.unwrap_or(c.standing);
            c.updated_at = now;
            let [max_servers, max_memory_mib, max_cores, max_disk_gib] = quota_cols(&c.quota);
            sqlx::query(UPSERT_CUSTOMER)
                .bind(id)
                .bind(max_servers)
                .bind(max_memory_mib)
                .bind(max_cores)
                .bind(max_disk_gib)
                .bind(c.standing.as_str())
                .bind(ts(now))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(c)
        }

        async fn create_token(
            &self,
            name: &str,
            hash: &str,
            role: Role,
            customer_id: Option<&str>,
        ) -> Result<ApiToken> {
            let token = ApiToken {
                id: Uuid::now_v7(),
                name: name.to_owned(),
                hash: hash.to_owned(),
                role,
                customer_id: customer_id.map(str::to_owned),
                created_at: self.clock.now(),
            };
            sqlx::query(INSERT_TOKEN)
                .bind(token.id)
                .bind(&token.name)
                .bind(&token.hash)
                .bind(role.as_str())
                .bind(customer_id)
                .bind(ts(token.created_at))
                .execute(&self.pool)
                .await?;
            Ok(token)
        }

        async fn find_token(&self, hash: &str) -> Result<Option<ApiToken>> {
            sqlx::query_as::<_, TokenRow>(SELECT_TOKEN_BY_HASH)
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?
                .map(ApiToken::try_from)
                .transpose()
        }

        async fn get_token(&self, id: Uuid) -> Result<Option<ApiToken>> {
            sqlx::query_as::<_, TokenRow>(SELECT_TOKEN_BY_ID)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .map(ApiToken::try_from)
                .transpose()
        }

        async fn heartbeat(&self, info: &ReplicaInfo) -> Result<()> {
            sqlx::query(UPSERT_REPLICA)
                .bind(&info.id)
                .bind(ts(info.started_at))
                .bind(ts(self.clock.now()))
                .bind(info.queue_depth)
                .bind(info.workers_busy)
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        async fn list_replicas(&self, alive_within: Duration) -> Result<Vec<ReplicaInfo>> {
            let now = self.clock.now();
            let since =
                now - chrono::Duration::from_std(alive_within).unwrap_or(chrono::Duration::MAX / 2);
            let rows = sqlx::query_as::<_, ReplicaRow>(LIST_REPLICAS)
                .bind(ts(since))
                .bind(ts(now))
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.into_iter().map(ReplicaInfo::from).collect())
        }

        async fn replace_orphans(&self, found: &[Orphan]) -> Result<()> {
            let mut tx = self.write_tx().await?;
            let stored: Vec<i64> = sqlx::query_scalar(ORPHAN_VMIDS).fetch_all(&mut *tx).await?;
            for vmid in vanished_orphans(&stored, found) {
                sqlx::query(DELETE_ORPHAN)
                    .bind(vmid)
                    .execute(&mut *tx)
                    .await?;
            }
            for o in found {
                sqlx::query(UPSERT_ORPHAN)
                    .bind(i64::from(o.vmid))
                    .bind(&o.node)
                    .bind(&o.marker)
                    .bind(o.name.as_deref())
                    .bind(ts(o.first_seen))
                    .bind(ts(o.last_seen))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        async fn list_orphans(&self) -> Result<Vec<Orphan>> {
            sqlx::query_as::<_, OrphanRow>(LIST_ORPHANS)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(Orphan::try_from)
                .collect()
        }

        async fn write_stats(&self, samples: &[crate::ServerStats]) -> Result<()> {
            if samples.is_empty() {
                return Ok(());
            }
            let mut tx = self.write_tx().await?;
            for chunk in samples.chunks(STATS_BATCH) {
                let mut q = sqlx::QueryBuilder::new(UPSERT_STATS_HEAD);
                q.push_values(chunk, |mut row, s| {
                    row.push_bind(s.server_id.0)
                        .push_bind(s.resources.as_ref().map(Json))
                        .push_bind(s.resources.as_ref().and(s.resources_seen_at).map(ts))
                        .push_bind(s.players.as_ref().map(Json))
                        .push_bind(s.players.as_ref().and(s.players_seen_at).map(ts))
                        .push_bind(s.agent.as_ref().map(Json))
                        .push_bind(s.agent.as_ref().and(s.agent_seen_at).map(ts));
                });
                q.push(UPSERT_STATS_TAIL);
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }

        async fn list_stats(&self, ids: &[ServerId]) -> Result<Vec<crate::ServerStats>> {
            if ids.is_empty() {
                return Ok(vec![]);
            }
            let mut out = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(STATS_BATCH) {
                let mut q = sqlx::QueryBuilder::new(SELECT_STATS_HEAD);
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.0);
                }
                q.push(")");
                let rows: Vec<StatsRow> = q.build_query_as().fetch_all(&self.pool).await?;
                out.extend(rows.into_iter().map(crate::ServerStats::from));
            }
            Ok(out)
        }

        async fn ping(&self) -> Result<()> {
            sqlx::query(PROBE_WRITE)
                .bind(ts(self.clock.now()))
                .execute(&self.pool)
                .await?;
            Ok(())
        }
    };
}

pub(crate) use shared_store_methods;

/// Connection-level helpers that are the same on both backends but for the connection type.
macro_rules! shared_conn_helpers {
    ($conn:ty) => {
        async fn operation(
            conn: &mut $conn,
            sql: &'static str,
            id: Uuid,
        ) -> Result<Option<Operation>> {
            sqlx::query_as::<_, OperationRow>(sql)
                .bind(id)
                .fetch_optional(conn)
                .await?
                .map(Operation::try_from)
                .transpose()
        }

        async fn insert_operation(conn: &mut $conn, op: &Operation) -> Result<()> {
            sqlx::query(INSERT_OPERATION)
                .bind(op.id.0)
                .bind(op.server_id.0)
                .bind(op.generation)
                .bind(op.kind.as_str())
                .bind(ts(op.created_at))
                .execute(conn)
                .await?;
            Ok(())
        }

        /// `INSERT_SERVER` or `UPDATE_SERVER` (same parameters).
        async fn save(conn: &mut $conn, sql: &'static str, s: &Server) -> Result<()> {
            let d = Denorm::of(s);
            sqlx::query(sql)
                .bind(s.id.0)
                .bind(&s.customer_id)
                .bind(d.kind)
                .bind(d.memory_mib)
                .bind(d.hostname)
                .bind(d.status_vmid)
                .bind(Json(&s.spec))
                .bind(Json(&s.status))
                .bind(s.generation)
                .bind(s.resource_version)
                .bind(d.reserved_vmid)
                .bind(s.deletion_requested_at.map(ts))
                .bind(s.paused)
                .bind(s.retry_requested_at.map(ts))
                .bind(ts(s.created_at))
                .bind(ts(s.updated_at))
                .execute(conn)
                .await?;
            Ok(())
        }

        async fn customer(conn: &mut $conn, id: &str, now: DateTime<Utc>) -> Result<Customer> {
            sqlx::query_as::<_, CustomerRow>(SELECT_CUSTOMER)
                .bind(id)
                .fetch_optional(conn)
                .await?
                .map_or_else(|| Ok(default_customer(id, now)), Customer::try_from)
        }

        async fn archived(conn: &mut $conn, id: Uuid) -> Result<Option<Archived>> {
            Ok(sqlx::query_as::<_, ArchiveRow>(SELECT_ARCHIVE)
                .bind(id)
                .fetch_optional(conn)
                .await?
                .map(Archived::from))
        }

        async fn live_servers(conn: &mut $conn, customer_id: &str) -> Result<Vec<Server>> {
            servers(
                sqlx::query_as::<_, ServerRow>(CUSTOMER_LIVE_SERVERS)
                    .bind(customer_id)
                    .fetch_all(conn)
                    .await?,
            )
        }
    };
}

pub(crate) use shared_conn_helpers;
