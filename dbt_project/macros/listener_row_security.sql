{#
    Privacy between listeners (README, "Listener roles"). `python -m pipelines grant-roles --listener
    NAME` makes a login role per listener, a member of the group role `listeners`, and maps it to the
    listener's Spotify user id in `listener_access.listener_roles`. This post-hook of every mart says
    what listeners may read of the relation just built. It has to be a hook, run by every build: dbt
    recreates views on every run and tables on a full refresh, and their policies and grants go with them.

    - A table with `user_id` (plays, coverage, listening_plays, listening_sessions): row-level security
      with one policy: a member of `listeners` sees the rows of its own user id, every other role (the
      loader, analyst, the pipeline) every row. FORCEd, so that it binds the table's owner too: that is
      what makes the views safe. A view reads its tables with its owner's rights (its owner is the
      tables' owner, which RLS skips unless forced), while `current_user` in the policy is still whoever
      queries the view. security_invoker views would not do: they would need listeners to read the
      dimensions below in full. What forcing costs the owner: each of its queries looks up once whether
      it is a listener (it is not: every row passes), and pg_stats hides these tables from it
      (macros/analyze_if_never_analyzed.sql allows for that).
    - A table without `user_id` (tracks, artists, albums, track_artists): shared by every listener, and
      its described_at, credited_at and last_load_id tell when somebody last played a track. Listeners
      may not read it; the views join it for the names of their own plays.
    - A view: listeners may read it when it has `user_id` and reads only marts (its rows then come from
      tables the policy filters; dimensions only add names), its owner does not bypass RLS, and those
      tables carry the policy. A view on staging (episode_plays, audiobook_plays) is not for listeners.
      So a new view for listeners takes its rows from a table with `user_id` and joins dimensions only
      for their attributes.

    Until grant-roles has made the first listener role, it does nothing (the tables keep no RLS).
#}


{#- Post-hook of the marts (dbt_project.yml). -#}
{% macro listener_row_security() -%}
    {{ listener_row_security_sql(model, this) }}
{%- endmacro %}


{#- `dbt run-operation protect_listener_rows`: the post-hook's work on every mart that exists, tables
    first. grant-roles --listener runs it, so a new listener needs no rebuild. -#}
{% macro protect_listener_rows() %}
    {%- set marts = [] -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' -%}
        {#- the graph's config keeps dbt_project.yml's spelling -#}
        {%- set hooks = node.config.get('post-hook') or node.config.get('post_hook') or [] -%}
        {%- if 'listener_row_security()' in hooks | map(attribute='sql') | join('\n') -%}
            {%- do marts.append(node) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set done = [] -%}
    {%- for views in [false, true] -%}
        {%- for node in marts if (node.config.materialized == 'view') == views -%}
            {%- set relation = adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias) -%}
            {%- if relation is not none -%}
                {%- do run_query(listener_row_security_sql(node, relation)) -%}
                {%- do done.append(relation) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {#- run-operation leaves the transaction open -#}
    {%- if done -%}
        {%- do adapter.commit() -%}
    {%- endif -%}
    {%- do log('listener row security on ' ~ done | length ~ ' marts', info=true) -%}
{% endmacro %}


{#- Whether the current role may see the row of `user_id_column`: the policy's expression. -#}
{% macro listener_sees(user_id_column='user_id') -%}
(
    not exists (
        select from pg_catalog.pg_roles
        where rolname = 'listeners' and pg_catalog.pg_has_role(current_user, oid, 'member')
    )
    or {{ user_id_column }} in (
        select listener_roles.user_id
        from listener_access.listener_roles
        where listener_roles.role_name = current_user
    )
)
{%- endmacro %}


{#- The marts' tables a view reads, directly or through other views, and whether it reads nothing else
    (no source, no staging model). -#}
{% macro listener_upstream(node) %}
    {%- set tables = [] -%}
    {%- set elsewhere = [] -%}
    {%- for unique_id in node.depends_on.nodes -%}
        {%- set upstream = graph.nodes.get(unique_id) -%}
        {%- if upstream is none or upstream.resource_type != 'model' or upstream.schema != node.schema -%}
            {%- do elsewhere.append(unique_id) -%}
        {%- elif upstream.config.materialized in ['table', 'incremental'] -%}
            {%- do tables.append(api.Relation.create(schema=upstream.schema, identifier=upstream.alias) | string) -%}
        {%- elif upstream.config.materialized == 'view' -%}
            {%- set further = listener_upstream(upstream) -%}
            {%- do tables.extend(further.tables) -%}
            {%- do elsewhere.extend(further.elsewhere) -%}
        {%- else -%}
            {%- do elsewhere.append(unique_id) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return({'tables': tables | unique | list, 'elsewhere': elsewhere}) }}
{% endmacro %}


{#- One DO block: cheap when everything is in place already (catalog look-ups only), so that an
    incremental run takes no lock stronger than its own writes. -#}
{% macro listener_row_security_sql(node, relation) -%}
    {%- set policy = 'listener_rows_' ~ local_md5(listener_sees())[:8] -%}
    {%- set is_view = node.config.materialized == 'view' -%}
    {%- set upstream = listener_upstream(node) if is_view else none -%}
do $listener_row_security$
declare
    target regclass := '{{ relation.include(database=false) }}'::regclass;
    stale name;
begin
    -- no listener role yet: nobody to protect the rows from
    if to_regrole('listeners') is null or not exists (
        select from pg_catalog.pg_class as c
        inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
        where n.nspname = 'listener_access' and c.relname = 'listener_roles'
    ) then
        return;
    end if;
{%- if not is_view %}
    if not exists (
        select from pg_catalog.pg_attribute
        where attrelid = target and attname = 'user_id' and attnum > 0 and not attisdropped
    ) then
        -- shared by every listener: not theirs to read
        if has_any_column_privilege('listeners', target, 'select') then
            execute format('revoke all on %s from listeners', target);
        end if;
        return;
    end if;
    if not exists (
        select from pg_catalog.pg_class as c
        inner join pg_catalog.pg_policy as p on c.oid = p.polrelid
        where c.oid = target and c.relrowsecurity and c.relforcerowsecurity and p.polname = '{{ policy }}'
    ) then
        -- a policy of an earlier version of this macro (its name holds the hash of its expression)
        for stale in select polname from pg_catalog.pg_policy where polrelid = target and polname like 'listener\_rows\_%' loop
            execute format('drop policy %I on %s', stale, target);
        end loop;
        execute format('alter table %s enable row level security', target);
        execute format('alter table %s force row level security', target);
        execute format(
            $policy$create policy %I on %s using {{ listener_sees() }}$policy$,
            '{{ policy }}',
            target
        );
    end if;
    if not has_table_privilege('listeners', target, 'select') then
        execute format('grant select on %s to listeners', target);
    end if;
{%- else %}
    if {{ 'true' if not upstream.elsewhere else 'false' }}
        and exists (
            select from pg_catalog.pg_attribute
            where attrelid = target and attname = 'user_id' and attnum > 0 and not attisdropped
        )
        -- an owner that bypasses RLS (a superuser) would read every listener's rows for them
        and exists (
            select from pg_catalog.pg_class as c
            inner join pg_catalog.pg_roles as r on c.relowner = r.oid
            where c.oid = target and not r.rolsuper and not r.rolbypassrls
        )
        -- every table it reads exists, and carries the policy if it holds listeners' rows
        and not exists (
            select from unnest(array[{% for table in upstream.tables %}'{{ table }}'{{ ',' if not loop.last }}{% endfor %}]::text[]) as upstream (name)
            left join pg_catalog.pg_class as c on to_regclass(upstream.name) = c.oid
            where
                c.oid is null
                or (
                    exists (
                        select from pg_catalog.pg_attribute as a
                        where a.attrelid = c.oid and a.attname = 'user_id' and a.attnum > 0 and not a.attisdropped
                    )
                    and not (
                        c.relrowsecurity
                        and c.relforcerowsecurity
                        and exists (
                            select from pg_catalog.pg_policy as p
                            where p.polrelid = c.oid and p.polname = '{{ policy }}'
                        )
                    )
                )
        )
    then
        if not has_table_privilege('listeners', target, 'select') then
            execute format('grant select on %s to listeners', target);
        end if;
    elsif has_any_column_privilege('listeners', target, 'select') then
        execute format('revoke all on %s from listeners', target);
    end if;
{%- endif %}
end
$listener_row_security$
{%- endmacro %}
