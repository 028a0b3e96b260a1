"""DDL the schema tests share: one shop schema, written twice in different orders."""

SHOP = """
CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped');
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name varchar(100),
                    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL,
                    price numeric(10,2) NOT NULL DEFAULT 0 CHECK (price >= 0),
                    stock int NOT NULL DEFAULT 0);
CREATE TABLE orders (id serial PRIMARY KEY,
                     user_id int NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                     item_id int NOT NULL REFERENCES items(id), quantity int NOT NULL,
                     status order_status NOT NULL DEFAULT 'new');
CREATE INDEX orders_user_id_idx ON orders (user_id);
CREATE INDEX orders_item_id_idx ON orders (item_id);
CREATE VIEW order_counts AS SELECT user_id, count(*) AS n FROM orders GROUP BY user_id;
"""

# the same schema: objects, columns and constraints in another order, other index names
SHOP_REORDERED = """
CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped');
CREATE TABLE orders (status order_status NOT NULL DEFAULT 'new', quantity int NOT NULL,
                     item_id int NOT NULL, user_id int NOT NULL, id serial);
CREATE TABLE items (stock int NOT NULL DEFAULT 0, price numeric(10,2) NOT NULL DEFAULT 0,
                    name text NOT NULL, id serial PRIMARY KEY);
ALTER TABLE items ADD CHECK (price >= 0);
CREATE INDEX idx_b ON orders (item_id);
CREATE TABLE users (created_at timestamptz NOT NULL DEFAULT now(), name varchar(100),
                    email text NOT NULL, id serial PRIMARY KEY);
CREATE INDEX idx_a ON orders (user_id);
ALTER TABLE users ADD UNIQUE (email);
ALTER TABLE orders ADD PRIMARY KEY (id);
ALTER TABLE orders ADD FOREIGN KEY (item_id) REFERENCES items(id);
ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE;
CREATE VIEW order_counts AS SELECT user_id, count(*) AS n FROM orders GROUP BY user_id;
"""
